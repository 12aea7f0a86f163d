// `vigil audit export --bundle`: a fresh checkpoint of the head, then the chain from the first
// event in scope up to it as a self-contained audit bundle (common/audit/bundle.h). Reads in
// one transaction; memory grows with the events between the first in scope and the head.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/audit/bundle.h"
#include "controller/audit/checkpointer.h"
#include "storage/store.h"

namespace vigil::controller {

// The bundle as JSON. NotFound when no event is in `scope` (naming the incident or the range).
absl::StatusOr<std::string> ExportAuditBundle(storage::Store& store, Checkpointer& checkpointer,
                                              const audit::BundleScope& scope, int64_t now_unix_ms);

}  // namespace vigil::controller
