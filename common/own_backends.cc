#include "common/own_backends.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace vigil {

OwnBackends& OwnBackends::Get() {
  static auto* backends = new OwnBackends();
  return *backends;
}

void OwnBackends::Add(int pid) {
  absl::MutexLock lock(&mu_);
  pids_.insert(pid);
}

void OwnBackends::Remove(int pid) {
  absl::MutexLock lock(&mu_);
  if (auto it = pids_.find(pid); it != pids_.end()) {
    pids_.erase(it);
  }
}

bool OwnBackends::Contains(int pid) const {
  absl::MutexLock lock(&mu_);
  return pids_.contains(pid);
}

std::string OwnBackends::SqlArray() const {
  absl::MutexLock lock(&mu_);
  return absl::StrCat("'{", absl::StrJoin(pids_, ","), "}'");
}

}  // namespace vigil
