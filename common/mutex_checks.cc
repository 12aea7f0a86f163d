#include "common/mutex_checks.h"

#include "absl/synchronization/mutex.h"

namespace vigil {

void UseReleaseMutexChecks() {
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

}  // namespace vigil
