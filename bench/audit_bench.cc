// The audit trail's costs, in one run on one disk (a real SQLite database in a temporary folder,
// WAL, synchronous=FULL):
//  1. the timeline's append rate with and without checkpointing (a Checkpointer signing every
//     1,000 events, as the controller runs it), in alternating rounds, medians;
//  2. `audit verify` over the whole chain (default 1,000,000 events), full and incremental from
//     the newest checkpoint, beside `sha256sum` over a file of the chain's stored bytes;
//  3. an audit bundle of a 10,000-event incident: export, then offline verification (parse and
//     check), beside `sha256sum` over the bundle file.
//   build/bench/audit_bench [--events=N] [--incident-events=N] [--rounds=N]
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/audit/bundle.h"
#include "common/clock.h"
#include "controller/audit/auditor.h"
#include "controller/audit/bundle_export.h"
#include "controller/audit/checkpointer.h"
#include "controller/timeline/timeline_writer.h"
#include "storage/sqlite/sqlite_store.h"

namespace vigil {
namespace {

constexpr size_t kBatch = 1000;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "audit_bench: %s\n", what.c_str());
  std::exit(1);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A storm-shaped event (~250 bytes of content); every other one of `incident` in the tail.
v1::TimelineEvent MakeEvent(size_t i, const std::string& incident) {
  v1::TimelineEvent e;
  e.set_incident_id(incident);
  e.set_time_unix_ms(1'700'000'000'000 + static_cast<int64_t>(i));
  e.set_kind("alert_fired");
  e.set_actor(absl::StrCat("api-", i % 1000));
  e.set_summary(absl::StrCat("HighAPILatency on api-", i % 1000,
                             ": nginx_request_duration_seconds p95 > 2 (value 2.41)"));
  e.set_details_json(
      absl::StrCat(R"({"alert":"al-)", i, R"(","value":2.41,"rule":"HighAPILatency"})"));
  return e;
}

// `count` events from number `from` on, committed straight to the store in batches of 1,000,
// each batch then signed (`checkpointer`: a checkpoint every 1,000 events, as the controller's
// default); `incident` "" alternates INC-BIG and others.
void Append(storage::Store& store, size_t from, size_t count, const std::string& incident,
            controller::Checkpointer* checkpointer) {
  for (size_t done = 0; done < count;) {
    storage::WriteBatch batch;
    const size_t n = std::min(kBatch, count - done);
    for (size_t i = 0; i < n; ++i) {
      const size_t number = from + done + i;
      std::string of = incident;
      if (of.empty()) of = number % 2 == 0 ? "INC-BIG" : "INC-OTHER";
      batch.Append(MakeEvent(number, of));
    }
    absl::StatusOr<std::vector<v1::TimelineEvent>> stored = store.Commit(std::move(batch));
    if (!stored.ok()) Die(std::string(stored.status().message()));
    if (checkpointer != nullptr && !checkpointer->CheckpointNow().ok()) Die("checkpoint");
    done += n;
  }
}

// Wall seconds of `sha256sum FILE` (the median of 3).
double Sha256sumSeconds(const std::string& file) {
  std::vector<double> runs;
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    const std::string command = absl::StrCat("sha256sum ", file, " > /dev/null");
    if (std::system(command.c_str()) != 0) Die("sha256sum failed");
    runs.push_back(absl::ToDoubleSeconds(absl::Now() - start));
  }
  return Median(runs);
}

}  // namespace
}  // namespace vigil

int main(int argc, char** argv) {
  using namespace vigil;
  size_t events = 1'000'000;
  size_t incident_events = 10'000;
  int rounds = 5;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    size_t n = 0;
    if (absl::ConsumePrefix(&arg, "--events=") && absl::SimpleAtoi(arg, &n)) {
      events = n;
    } else if (absl::ConsumePrefix(&arg, "--incident-events=") && absl::SimpleAtoi(arg, &n)) {
      incident_events = n;
    } else if (absl::ConsumePrefix(&arg, "--rounds=") && absl::SimpleAtoi(arg, &n)) {
      rounds = static_cast<int>(n);
    } else {
      Die(absl::StrCat("unknown argument ", argv[i],
                       " (--events=N --incident-events=N --rounds=N)"));
    }
  }
  std::string folder = (std::filesystem::temp_directory_path() / "vigil-audit-bench-XXXXXX");
  if (mkdtemp(folder.data()) == nullptr) Die("mkdtemp");
  auto opened = storage::OpenSqliteStore(folder + "/vigil.db");
  if (!opened.ok()) Die(std::string(opened.status().message()));
  storage::Store& store = **opened;
  RealClock clock;
  auto signer = audit::CheckpointSigner::LoadOrCreate(folder + "/audit.key", folder + "/audit.pub");
  if (!signer.ok()) Die(std::string(signer.status().message()));
  controller::Checkpointer::Options options;  // every 1,000 events, every 10 s
  // As the controller runs them: periodic checkpoints ride in the writer's group commits.
  controller::TimelineWriter writer(&store, &clock);
  controller::Checkpointer checkpointer(&store, &clock, *std::move(signer), options, &writer);
  if (!checkpointer.Start().ok()) Die("checkpointer");

  // 1. Append rate through the timeline writer (one unit per event, as the controller's
  // incidents submit them), alternating rounds of 100,000 events without and with checkpointing.
  std::atomic<bool> checkpointing{false};
  writer.AddListener([&](const v1::TimelineEvent& e) {
    if (checkpointing.load()) checkpointer.OnEvent(e);
  });
  writer.Start();
  constexpr size_t kRound = 100'000;
  size_t seq = 0;
  std::vector<double> plain, checkpointed;
  for (int r = 0; r < rounds; ++r) {
    for (bool with : {false, true}) {
      checkpointing = with;
      const absl::Time start = absl::Now();
      for (size_t i = 0; i < kRound; ++i) {
        writer.Submit([e = MakeEvent(seq + i, "INC-OTHER")](controller::Transaction& txn) {
          txn.Append(e.incident_id(), e.kind(), e.actor(), e.summary(), e.details_json(), nullptr);
          return absl::OkStatus();
        });
      }
      writer.Flush();
      const double rate = kRound / absl::ToDoubleSeconds(absl::Now() - start);
      (with ? checkpointed : plain).push_back(rate);
      seq += kRound;
    }
  }
  checkpointing = false;
  writer.Stop();
  const controller::Checkpointer::Stats stats = checkpointer.stats();
  std::printf("append through the timeline writer, %d rounds of %zu events each way (medians):\n",
              rounds, kRound);
  std::printf("  without checkpoints %9.0f events/s\n", Median(plain));
  std::printf(
      "  with checkpoints    %9.0f events/s  (%.1f %% of the rate without; %llu "
      "checkpoints signed, every %zu events)\n",
      Median(checkpointed), 100 * Median(checkpointed) / Median(plain),
      static_cast<unsigned long long>(stats.signed_checkpoints), options.every_events);

  // 2. The chain up to `events`, the last 2 x incident_events alternating with INC-BIG.
  const size_t tail = 2 * incident_events;
  if (events > seq + tail) Append(store, seq, events - seq - tail, "INC-OTHER", &checkpointer);
  seq = std::max(seq, events - tail);
  Append(store, seq, tail, "", &checkpointer);
  seq += tail;
  if (!checkpointer.CheckpointNow().ok()) Die("checkpoint");

  // The stored bytes of every event, for sha256sum over the same amount.
  const std::string chain_file = folder + "/chain.bytes";
  size_t chain_bytes = 0;
  {
    std::ofstream out(chain_file, std::ios::binary);
    storage::ChainSnapshot snapshot;
    absl::Status read = store.ReadChain(0, 0, &snapshot, [&](const v1::TimelineEvent& e) {
      for (const std::string* field : {&e.incident_id(), &e.kind(), &e.actor(), &e.summary(),
                                       &e.details_json(), &e.prev_hash(), &e.hash()}) {
        out.write(field->data(), static_cast<std::streamsize>(field->size()));
        chain_bytes += field->size();
      }
      chain_bytes += 16;  // seq and time
      out.write("0123456789abcdef", 16);
      return true;
    });
    if (!read.ok()) Die(std::string(read.message()));
  }
  controller::Auditor auditor(&store, &writer, &clock);
  if (!auditor.Init(checkpointer.public_key_pem()).ok()) Die("auditor");
  std::vector<double> full_runs;
  uint64_t checked = 0;
  for (int i = 0; i < 3; ++i) {
    v1::VerifyAuditRequest request;
    request.set_full(true);
    const absl::Time start = absl::Now();
    auto r = auditor.Verify(request, "bench");
    full_runs.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    if (!r.ok() || !r->ok()) Die(r.ok() ? r->problem() : std::string(r.status().message()));
    checked = r->events_checked();
  }
  // Incremental: 1,000 more events and their checkpoint after the full check.
  Append(store, seq, kBatch, "INC-OTHER", &checkpointer);
  seq += kBatch;
  if (!checkpointer.CheckpointNow().ok()) Die("checkpoint");
  v1::VerifyAuditRequest incremental_request;
  const absl::Time incremental_start = absl::Now();
  auto incremental = auditor.Verify(incremental_request, "bench");
  const double incremental_seconds = absl::ToDoubleSeconds(absl::Now() - incremental_start);
  if (!incremental.ok() || !incremental->ok()) Die("incremental verify failed");
  const double sha_chain = Sha256sumSeconds(chain_file);
  const double mb = static_cast<double>(chain_bytes) / 1e6;
  std::printf("audit verify over %llu events (%.1f MB stored):\n",
              static_cast<unsigned long long>(checked), mb);
  std::printf("  full         %7.3f s  %7.1f MB/s  %9.0f events/s  (median of 3)\n",
              Median(full_runs), mb / Median(full_runs), checked / Median(full_runs));
  std::printf("  incremental  %7.3f s  (%llu events from the checkpoint at %llu)\n",
              incremental_seconds, static_cast<unsigned long long>(incremental->events_checked()),
              static_cast<unsigned long long>(incremental->verified_from_seq()));
  std::printf(
      "  sha256sum    %7.3f s  %7.1f MB/s  over the same bytes (median of 3): verify takes "
      "%.1fx its time\n",
      sha_chain, mb / sha_chain, Median(full_runs) / sha_chain);

  // 3. A bundle of INC-BIG.
  const absl::Time export_start = absl::Now();
  audit::BundleScope scope;
  scope.incident_id = "INC-BIG";
  auto json = controller::ExportAuditBundle(store, checkpointer, scope, 0);
  const double export_seconds = absl::ToDoubleSeconds(absl::Now() - export_start);
  if (!json.ok()) Die(std::string(json.status().message()));
  const std::string bundle_file = folder + "/bundle.json";
  std::ofstream(bundle_file, std::ios::binary) << *json;
  auto key = Ed25519PublicKey::FromPem(checkpointer.public_key_pem());
  std::vector<double> verify_runs;
  uint64_t in_scope = 0;
  for (int i = 0; i < 3; ++i) {
    const absl::Time start = absl::Now();
    auto bundle = audit::BundleFromJson(*json, bundle_file);
    if (!bundle.ok()) Die(std::string(bundle.status().message()));
    audit::BundleReport report = audit::VerifyBundle(*bundle, **key);
    verify_runs.push_back(absl::ToDoubleSeconds(absl::Now() - start));
    if (!report.ok) Die(report.problem);
    in_scope = report.events_in_scope;
  }
  const double bundle_mb = static_cast<double>(json->size()) / 1e6;
  const double sha_bundle = Sha256sumSeconds(bundle_file);
  std::printf("bundle of an incident with %llu events (%.1f MB):\n",
              static_cast<unsigned long long>(in_scope), bundle_mb);
  std::printf(
      "  export       %7.3f s (a checkpoint, then the chain from the incident's first event)\n",
      export_seconds);
  std::printf("  verify       %7.3f s  %7.1f MB/s  (parse and check, median of 3)\n",
              Median(verify_runs), bundle_mb / Median(verify_runs));
  std::printf(
      "  sha256sum    %7.3f s  %7.1f MB/s  over the bundle file: verify takes %.1fx its "
      "time\n",
      sha_bundle, bundle_mb / sha_bundle, Median(verify_runs) / sha_bundle);
  checkpointer.Stop();
  opened->reset();
  std::filesystem::remove_all(folder);
  return 0;
}
