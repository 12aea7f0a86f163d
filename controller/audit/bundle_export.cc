#include "controller/audit/bundle_export.h"

#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace vigil::controller {

absl::StatusOr<std::string> ExportAuditBundle(storage::Store& store, Checkpointer& checkpointer,
                                              const audit::BundleScope& scope,
                                              int64_t now_unix_ms) {
  // The bundle ends at a checkpoint: one of the head as it is now.
  ASSIGN_OR_RETURN(v1::AuditCheckpoint covering, checkpointer.CheckpointNow());
  storage::ChainSnapshot snapshot;
  std::optional<audit::BundleBuilder> builder;
  auto start = [&] {
    if (!builder.has_value()) {
      builder.emplace(scope, snapshot.format2_from_seq, checkpointer.public_key_pem(), now_unix_ms);
    }
  };
  RETURN_IF_ERROR(
      store.ReadChain(0, covering.seq(), &snapshot, [&](const v1::TimelineEvent& event) {
        start();
        builder->Add(event);
        return true;
      }));
  start();
  std::vector<v1::AuditCheckpoint> checkpoints;
  for (v1::AuditCheckpoint& checkpoint : snapshot.checkpoints) {
    if (checkpoint.seq() <= covering.seq()) {
      checkpoints.push_back(std::move(checkpoint));
    }
  }
  absl::StatusOr<v1::AuditBundle> bundle = builder->Finish(std::move(checkpoints));
  if (!bundle.ok()) {
    if (bundle.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          scope.incident_id.empty()
              ? absl::StrCat("no timeline event between ", scope.since_unix_ms, " and ",
                             scope.until_unix_ms == 0 ? std::string("now")
                                                      : absl::StrCat(scope.until_unix_ms),
                             " (unix ms)")
              : absl::StrCat("incident ", scope.incident_id, " has no timeline event"));
    }
    return bundle.status();
  }
  return audit::BundleToJson(*bundle);
}

}  // namespace vigil::controller
