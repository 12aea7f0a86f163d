// ReadPool: the controller's own reader threads. API calls hand their store reads here, so no
// gRPC thread ever waits on SQLite, and finish their reactor from here. The queue is bounded: a
// read that does not fit is refused at once (RESOURCE_EXHAUSTED) instead of held in memory.
// Heavy reads (a whole-chain audit, an export) may use all threads but one, so a light read
// (one incident, a list) always finds a thread. Its threads are named "vigil-reader".
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace vigil::controller {

class ReadPool {
 public:
  struct Options {
    int threads = 3;          // at least 2: one is always kept for light reads
    size_t max_queued = 256;  // reads waiting for a thread, light and heavy together
  };
  enum class Lane { kLight, kHeavy };
  struct Stats {
    uint64_t queued = 0;    // waiting now
    uint64_t running = 0;   // on a thread now
    uint64_t refused = 0;   // refused since start because the queue was full
    uint64_t done = 0;      // run to the end since start
  };

  explicit ReadPool(Options options);
  // Runs what is queued, then stops the threads. Call when nothing submits any more (after the
  // gRPC server has shut down); a task queued meanwhile still runs, so every call finishes.
  ~ReadPool();
  ReadPool(const ReadPool&) = delete;
  ReadPool& operator=(const ReadPool&) = delete;

  // Queues `task`; light tasks run in order of arrival, heavy ones too, light ones first.
  // RESOURCE_EXHAUSTED (task dropped, not run) when max_queued tasks are waiting already.
  absl::Status Submit(Lane lane, std::function<void()> task);

  Stats stats() const;
  const Options& options() const { return options_; }

 private:
  void Loop();

  const Options options_;
  const int max_heavy_running_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> light_ ABSL_GUARDED_BY(mu_);
  std::deque<std::function<void()>> heavy_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int heavy_running_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace vigil::controller
