// `vigil incident show` latency while the controller verifies a long audit chain: the CLI's
// wall time (process start to exit, as a person sees it) for one ordinary incident, first on an
// idle controller, then while other clients run VerifyAudit over the whole chain back to back.
//
// A database is seeded with --events timeline events (one incident of --show-events events, the
// rest spread over other incidents), a real vigil-controller is started on loopback, and the
// CLI binary is run --shows times per phase, then the GetIncident call alone is made --shows
// times from this process (the server's part, without the CLI's start-up). Prints p50, p99 and
// max per phase, and how many VerifyAudit calls ran and how long each took. Point
// --controller-bin and --cli-bin at another build to compare.
//
//   read_latency_bench --controller-bin build/controller/vigil-controller --cli-bin build/cli/vigil
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/child_process.h"
#include "storage/sqlite/sqlite_store.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace {

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// Runs `argv` to its end; the exit status, or -1.
int Run(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = vigil::bench::SpawnLogged(argv, log);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
    return -1;
  }
  return WEXITSTATUS(status);
}

std::string AddUser(const std::string& binary, const std::string& db, const std::string& log) {
  const std::string command =
      absl::StrCat("'", binary, "' users add bench --role viewer --db '", db, "' 2>>'", log, "'");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    return "";
  }
  std::string out;
  char buffer[256];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) {
    out += buffer;
  }
  if (pclose(pipe) != 0) {
    return "";
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) {
    return NAN;
  }
  std::sort(values.begin(), values.end());
  const size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}

bool Seed(const std::string& db, int events, int show_events) {
  absl::StatusOr<std::unique_ptr<vigil::storage::Store>> store =
      vigil::storage::OpenSqliteStore(db);
  if (!store.ok()) {
    std::fprintf(stderr, "seed: %s\n", std::string(store.status().message()).c_str());
    return false;
  }
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  constexpr int kBatch = 10'000;
  for (int done = 0; done < events;) {
    vigil::storage::WriteBatch batch;
    for (int i = 0; i < kBatch && done < events; ++i, ++done) {
      vigil::v1::TimelineEvent e;
      // The shown incident's events are spread through the chain.
      const bool shown = done % std::max(events / std::max(show_events, 1), 1) == 0;
      e.set_incident_id(shown ? "INC-0001" : absl::StrCat("INC-", 2 + done % 500));
      e.set_time_unix_ms(now_ms - events + done);
      e.set_kind("note");
      e.set_actor("bench");
      e.set_summary(absl::StrCat("note ", done, " on a bench timeline"));
      e.set_details_json(R"({"host":"web-1","value":0.97})");
      batch.Append(std::move(e));
    }
    if (absl::StatusOr<std::vector<vigil::v1::TimelineEvent>> stored =
            (*store)->Commit(std::move(batch));
        !stored.ok()) {
      std::fprintf(stderr, "seed: %s\n", std::string(stored.status().message()).c_str());
      return false;
    }
  }
  vigil::v1::Incident incident;
  incident.set_id("INC-0001");
  incident.set_title("bench incident");
  incident.set_opened_unix_ms(now_ms - events);
  return (*store)->SaveIncident(incident).ok();
}

struct Phase {
  std::vector<double> ms;
  int failed = 0;
};

// The GetIncident call alone, from this process (no CLI start-up in the figure).
Phase Calls(vigil::v1::ControlService::Stub* stub, const std::string& token, int n) {
  Phase phase;
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    vigil::v1::GetIncidentRequest request;
    request.set_incident_id("INC-0001");
    vigil::v1::GetIncidentResponse response;
    const absl::Time start = absl::Now();
    const grpc::Status status = stub->GetIncident(&context, request, &response);
    phase.ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
    if (!status.ok()) {
      ++phase.failed;
    }
  }
  return phase;
}

Phase Shows(const std::vector<std::string>& argv, int n, const std::string& log) {
  Phase phase;
  for (int i = 0; i < n; ++i) {
    const absl::Time start = absl::Now();
    const int rc = Run(argv, log);
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    if (rc != 0) {
      ++phase.failed;
    }
    phase.ms.push_back(ms);
  }
  return phase;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"vigil incident show latency while VerifyAudit runs over a long chain"};
  std::string controller_bin = "build/controller/vigil-controller";
  std::string cli_bin = "build/cli/vigil";
  int events = 100'000;
  int show_events = 50;
  int shows = 200;
  int verifiers = 1;
  app.add_option("--controller-bin", controller_bin, "vigil-controller binary");
  app.add_option("--cli-bin", cli_bin, "vigil binary");
  app.add_option("--events", events, "timeline events in the chain");
  app.add_option("--show-events", show_events, "events of the incident shown");
  app.add_option("--shows", shows, "incident shows per phase");
  app.add_option("--verifiers", verifiers, "clients running VerifyAudit back to back");
  CLI11_PARSE(app, argc, argv);

  char tmpl[] = "/tmp/vigil-read-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string db = dir + "/vigil.db";
  const std::string log = dir + "/controller.log";
  const std::string cli_log = dir + "/cli.log";
  const absl::Time seed_start = absl::Now();
  if (!Seed(db, events, show_events)) {
    return 1;
  }
  std::printf("seeded %d events in %.1f s (%s)\n", events,
              absl::ToDoubleSeconds(absl::Now() - seed_start), dir.c_str());
  const std::string token = AddUser(controller_bin, db, log);
  if (token.empty()) {
    std::fprintf(stderr, "users add failed; see %s\n", log.c_str());
    return 1;
  }
  const std::string address = absl::StrCat("127.0.0.1:", FreePort());
  const pid_t controller =
      vigil::bench::SpawnLogged({controller_bin, "--listen=" + address, "--db=" + db, "--insecure",
                                 "--http-listen=off", "--log-level=warn"},
                                log);
  const std::vector<std::string> cli = {cli_bin, "--controller=" + address, "--insecure",
                                        "--token=" + token};
  std::vector<std::string> show = cli;
  show.insert(show.end(), {"incident", "show", "INC-0001"});
  std::vector<std::string> agents = cli;
  agents.push_back("agents");
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    up = Run(agents, cli_log) == 0;
    if (!up) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  if (!up) {
    std::fprintf(stderr, "the controller did not answer; see %s\n", log.c_str());
    kill(controller, SIGKILL);
    return 1;
  }

  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto probe = vigil::v1::ControlService::NewStub(channel);
  const Phase idle = Shows(show, shows, cli_log);
  const Phase idle_calls = Calls(probe.get(), token, shows);

  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::vector<double> verify_ms;
  int verify_failed = 0;
  uint64_t checked = 0;
  std::vector<std::thread> threads;
  for (int v = 0; v < verifiers; ++v) {
    threads.emplace_back([&] {
      auto stub = vigil::v1::ControlService::NewStub(channel);
      while (!stop.load()) {
        grpc::ClientContext context;
        context.AddMetadata("authorization", "Bearer " + token);
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
        vigil::v1::VerifyAuditResponse response;
        const absl::Time start = absl::Now();
        grpc::Status status =
            stub->VerifyAudit(&context, vigil::v1::VerifyAuditRequest(), &response);
        absl::MutexLock lock(&mu);
        if (status.ok()) {
          verify_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
          checked = response.events_checked();
        } else {
          ++verify_failed;
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(50));  // let the first verification get under way
  const Phase busy = Shows(show, shows, cli_log);
  const Phase busy_calls = Calls(probe.get(), token, shows);
  stop.store(true);
  for (std::thread& t : threads) {
    t.join();
  }
  kill(controller, SIGTERM);
  waitpid(controller, nullptr, 0);

  std::printf("\nvigil incident show INC-0001 (%d of %d events), %d runs per phase, wall ms\n",
              show_events, events, shows);
  std::printf("%-40s %8s %8s %8s %7s\n", "phase", "p50", "p99", "max", "failed");
  auto row = [](const char* name, const Phase& p) {
    std::printf("%-40s %8.1f %8.1f %8.1f %7d\n", name, Percentile(p.ms, 0.5),
                Percentile(p.ms, 0.99), Percentile(p.ms, 1.0), p.failed);
  };
  row("vigil incident show, idle", idle);
  row(absl::StrFormat("vigil incident show, VerifyAudit x%d", verifiers).c_str(), busy);
  row("GetIncident call, idle", idle_calls);
  row(absl::StrFormat("GetIncident call, VerifyAudit x%d", verifiers).c_str(), busy_calls);
  absl::MutexLock lock(&mu);
  std::printf(
      "VerifyAudit: %zu completed (%d failed), %llu events each, p50 %.0f ms, max %.0f ms\n",
      verify_ms.size(), verify_failed, static_cast<unsigned long long>(checked),
      Percentile(verify_ms, 0.5), Percentile(verify_ms, 1.0));
  std::filesystem::remove_all(dir);
  return 0;
}
