// The PostgreSQL backend pids of this process's own connections (the postgres collector's and
// the actions'), recorded with `SELECT pg_backend_pid()` when each connection opens. Actions
// refuse to signal these, and the collector leaves them out of its figures: the agent is known
// by pid, never by an application_name any session can claim. Thread-safe.
#pragma once

#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace vigil {

class OwnBackends {
 public:
  // The process-wide set.
  static OwnBackends& Get();

  void Add(int pid);
  void Remove(int pid);
  bool Contains(int pid) const;
  // A PostgreSQL int[] literal of the pids, e.g. '{12,34}' (with the quotes), for queries.
  std::string SqlArray() const;

 private:
  mutable absl::Mutex mu_;
  std::multiset<int> pids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil
