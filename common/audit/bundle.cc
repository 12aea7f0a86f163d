#include "common/audit/bundle.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/audit/checkpoint.h"

namespace vigil::audit {

bool BundleScope::Contains(const v1::TimelineEvent& event) const {
  if (!incident_id.empty()) {
    return event.incident_id() == incident_id;
  }
  return event.time_unix_ms() >= since_unix_ms &&
         (until_unix_ms == 0 || event.time_unix_ms() < until_unix_ms);
}

BundleBuilder::BundleBuilder(BundleScope scope, uint64_t format2_from_seq,
                             std::string public_key_pem, int64_t created_unix_ms)
    : scope_(std::move(scope)) {
  bundle_.set_format(std::string(kBundleFormat));
  bundle_.set_created_unix_ms(created_unix_ms);
  bundle_.set_public_key_pem(std::move(public_key_pem));
  bundle_.set_format2_from_seq(format2_from_seq);
  bundle_.set_incident_id(scope_.incident_id);
  bundle_.set_since_unix_ms(scope_.since_unix_ms);
  bundle_.set_until_unix_ms(scope_.until_unix_ms);
}

void BundleBuilder::Add(const v1::TimelineEvent& event) {
  const bool in_scope = scope_.Contains(event);
  // Nothing before the first event in scope: the chain is proven from its prev_hash on.
  if (!in_scope && in_scope_ == 0) {
    return;
  }
  v1::AuditBundle::Entry* entry = bundle_.add_entries();
  entry->set_seq(event.seq());
  entry->set_in_scope(in_scope);
  if (in_scope || event.seq() < bundle_.format2_from_seq()) {
    *entry->mutable_event() = event;
    entry->mutable_event()->clear_chain_format();
  } else {
    entry->set_content_hash(hasher_.ContentHash(event));
  }
  if (in_scope) {
    ++in_scope_;
  }
}

absl::StatusOr<v1::AuditBundle> BundleBuilder::Finish(
    std::vector<v1::AuditCheckpoint> checkpoints) {
  if (in_scope_ == 0) {
    return absl::NotFoundError("no timeline event is in the bundle's scope");
  }
  std::sort(
      checkpoints.begin(), checkpoints.end(),
      [](const v1::AuditCheckpoint& a, const v1::AuditCheckpoint& b) { return a.seq() < b.seq(); });
  const uint64_t first = bundle_.entries(0).seq();
  for (v1::AuditCheckpoint& checkpoint : checkpoints) {
    if (checkpoint.seq() >= first) {
      *bundle_.add_checkpoints() = std::move(checkpoint);
    }
  }
  return std::move(bundle_);
}

BundleReport VerifyBundle(const v1::AuditBundle& bundle, const Ed25519PublicKey& key) {
  BundleReport report;
  auto fail = [&report](uint64_t seq, std::string problem) {
    report.ok = false;
    report.first_bad_seq = seq;
    report.problem = std::move(problem);
    return report;
  };
  if (bundle.format() != kBundleFormat) {
    return fail(0, absl::StrCat("not an audit bundle of format ", kBundleFormat, " (format '",
                                bundle.format().substr(0, 64), "')"));
  }
  if (bundle.entries().empty()) {
    return fail(0, "the bundle holds no events");
  }
  if (bundle.checkpoints().empty()) {
    return fail(0, "the bundle holds no signed checkpoint: nothing vouches for its events");
  }
  if (!bundle.public_key_pem().empty()) {
    absl::StatusOr<std::unique_ptr<Ed25519PublicKey>> own =
        Ed25519PublicKey::FromPem(bundle.public_key_pem());
    if (!own.ok() || (*own)->key_id() != key.key_id()) {
      return fail(0, absl::StrCat("the bundle's public key is not the key it is checked against (",
                                  key.key_id(),
                                  "): it was exported by another controller or "
                                  "changed"));
    }
  }
  // Signatures first: the chain below is only worth anything if they hold.
  uint64_t previous_checkpoint = 0;
  for (const v1::AuditCheckpoint& checkpoint : bundle.checkpoints()) {
    if (absl::Status valid = VerifyCheckpoint(key, checkpoint); !valid.ok()) {
      return fail(checkpoint.seq(), std::string(valid.message()));
    }
    if (checkpoint.seq() <= previous_checkpoint) {
      return fail(checkpoint.seq(), "the bundle's checkpoints are not in increasing seq order");
    }
    previous_checkpoint = checkpoint.seq();
  }
  const v1::AuditBundle::Entry& head = bundle.entries(0);
  if (!head.has_event()) {
    return fail(head.seq(),
                absl::StrCat("the bundle's first entry (event ", head.seq(),
                             ") must be a whole event: its prev_hash starts the chain"));
  }
  report.first_seq = head.seq();
  std::string prev = head.event().prev_hash();
  TimelineHasher hasher;
  // A checkpoint before the first entry vouches for nothing here.
  int next_checkpoint = 0;
  while (next_checkpoint < bundle.checkpoints_size() &&
         bundle.checkpoints(next_checkpoint).seq() < report.first_seq) {
    ++next_checkpoint;
  }
  uint64_t expected = head.seq();
  for (const v1::AuditBundle::Entry& entry : bundle.entries()) {
    const uint64_t seq = entry.seq();
    if (seq != expected) {
      return fail(expected, absl::StrCat("event ", expected,
                                         seq > expected ? " is missing" : " appears twice",
                                         " (the next entry is event ", seq, ")"));
    }
    const uint32_t format = seq >= bundle.format2_from_seq() ? 2 : 1;
    std::string hash;
    if (entry.has_event()) {
      v1::TimelineEvent event = entry.event();
      if (event.seq() != seq) {
        return fail(seq, absl::StrCat("entry ", seq, " holds event ", event.seq()));
      }
      if (event.prev_hash() != prev) {
        return fail(seq, absl::StrCat("event ", seq, " does not follow event ", seq - 1,
                                      ": its prev_hash differs"));
      }
      event.set_chain_format(format);
      hash = hasher.Hash(event);
      if (!event.hash().empty() && event.hash() != hash) {
        return fail(
            seq, absl::StrCat("event ", seq, " (", event.kind(), ", incident ", event.incident_id(),
                              ") was changed: its content no longer matches its hash"));
      }
      if (entry.in_scope()) {
        BundleScope scope{bundle.incident_id(), bundle.since_unix_ms(), bundle.until_unix_ms()};
        if (!scope.Contains(event)) {
          return fail(seq, absl::StrCat("event ", seq, " is marked in scope but is not"));
        }
        ++report.events_in_scope;
      }
    } else {
      if (format != 2) {
        return fail(
            seq, absl::StrCat("event ", seq, " is of chain format 1: its whole content is needed"));
      }
      if (!IsHexHash(entry.content_hash())) {
        return fail(seq, absl::StrCat("entry ", seq, " has neither an event nor a content hash"));
      }
      if (entry.in_scope()) {
        return fail(seq, absl::StrCat("event ", seq, " is in scope but only its hash is given"));
      }
      hash = hasher.Link(prev, seq, entry.content_hash());
    }
    if (next_checkpoint < bundle.checkpoints_size() &&
        bundle.checkpoints(next_checkpoint).seq() == seq) {
      const v1::AuditCheckpoint& checkpoint = bundle.checkpoints(next_checkpoint++);
      if (checkpoint.hash() != hash) {
        return fail(report.first_seq,
                    absl::StrCat("the chain does not reach the signed ",
                                 DescribeCheckpoint(checkpoint), ": events from ", report.first_seq,
                                 " to ", seq, " were changed, added, removed or renumbered"));
      }
      report.covering_checkpoint = checkpoint;
    }
    prev = std::move(hash);
    report.last_seq = seq;
    ++expected;
  }
  const v1::AuditCheckpoint& last = bundle.checkpoints(bundle.checkpoints_size() - 1);
  if (report.covering_checkpoint.seq() != last.seq() || last.seq() != report.last_seq) {
    return fail(
        report.last_seq,
        absl::StrCat("the bundle's events end at ", report.last_seq, " but its last ",
                     DescribeCheckpoint(last),
                     " is elsewhere: the bundle must end at the checkpoint that covers it"));
  }
  if (report.events_in_scope == 0) {
    return fail(0, "no event of the bundle is in its scope");
  }
  report.ok = true;
  return report;
}

absl::StatusOr<std::string> BundleToJson(const v1::AuditBundle& bundle) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = false;
  std::string out;
  // Fails on a string field that is not UTF-8 (an event stored by an older version, or edited).
  if (const auto status = google::protobuf::util::MessageToJsonString(bundle, &out, options);
      !status.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot write the bundle as JSON: ", std::string(status.message())));
  }
  out.push_back('\n');
  return out;
}

absl::StatusOr<v1::AuditBundle> BundleFromJson(absl::string_view json, absl::string_view origin) {
  v1::AuditBundle bundle;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &bundle, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": not an audit bundle: ", std::string(status.message())));
  }
  return bundle;
}

}  // namespace vigil::audit
