// Fuzzes what `vigil audit verify --bundle` does with a file nobody vouches for: the bundle's
// JSON parser and the offline check (common/audit/bundle.h), plus the checkpoint log's line
// parser the controller reads at start. Two shapes per input: the input itself as a bundle, and
// the input as edits of a valid, signed bundle (so the chain and signature checks see inputs
// that get past the parser). A bundle may only verify when its chain reaches its last
// checkpoint and it holds events in scope; nothing may crash, leak or hang.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "common/audit/bundle.h"
#include "common/audit/chain_hash.h"
#include "common/audit/checkpoint.h"
#include "common/ed25519.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using vigil::Ed25519PrivateKey;
using vigil::Ed25519PublicKey;
namespace audit = vigil::audit;

struct Fixture {
  std::unique_ptr<Ed25519PublicKey> key;
  std::string valid_json;
};

// A signed bundle of incident "a" over twelve events, format 2 from event 5.
const Fixture& TheFixture() {
  static const Fixture* const fixture = [] {
    auto* f = new Fixture;
    auto private_key = Ed25519PrivateKey::Generate();
    audit::CheckpointSigner signer(*std::move(private_key));
    f->key = *Ed25519PublicKey::FromPem(signer.public_key_pem());
    audit::TimelineHasher hasher;
    std::string prev(audit::kGenesisHash);
    audit::BundleBuilder builder(audit::BundleScope{.incident_id = "a"}, 5,
                                 signer.public_key_pem(), 1);
    std::vector<vigil::v1::AuditCheckpoint> checkpoints;
    for (uint64_t seq = 1; seq <= 12; ++seq) {
      vigil::v1::TimelineEvent e;
      e.set_seq(seq);
      e.set_incident_id(seq % 3 == 0 ? "a" : "b");
      e.set_time_unix_ms(static_cast<int64_t>(seq) * 1000);
      e.set_kind("note");
      e.set_summary("s");
      e.set_chain_format(seq >= 5 ? 2 : 1);
      e.set_prev_hash(prev);
      e.set_hash(hasher.Hash(e));
      prev = e.hash();
      builder.Add(e);
      if (seq % 6 == 0) checkpoints.push_back(*signer.Sign(seq, e.hash(), 5000));
    }
    f->valid_json = *audit::BundleToJson(*builder.Finish(checkpoints));
    return f;
  }();
  return *fixture;
}

void Check(absl::string_view json) {
  const Fixture& f = TheFixture();
  auto bundle = audit::BundleFromJson(json, "fuzz.json");
  if (!bundle.ok()) return;
  const audit::BundleReport report = audit::VerifyBundle(*bundle, *f.key);
  if (report.ok) {
    FUZZ_CHECK(report.events_in_scope > 0);
    FUZZ_CHECK(report.covering_checkpoint.seq() == report.last_seq);
    FUZZ_CHECK(report.first_seq <= report.last_seq);
    FUZZ_CHECK(bundle->checkpoints_size() > 0);
  } else {
    FUZZ_CHECK(!report.problem.empty());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  Check(input);
  // The input as edits of the valid bundle: pairs of (2-byte offset, byte) overwrite it.
  std::string edited = TheFixture().valid_json;
  for (size_t i = 0; i + 3 <= size; i += 3) {
    const size_t at = (static_cast<size_t>(data[i]) << 8 | data[i + 1]) % edited.size();
    edited[at] = static_cast<char>(data[i + 2]);
  }
  Check(edited);
  return 0;
}
