// Serves `vigil watch` (ControlService.Watch): every stored event after the client's resume
// point, paged from the store on the hub's own reader thread (a gRPC thread never waits on the
// store), then live events from the timeline writer, with no gap and no repeat. Memory is capped
// per watcher and for all watchers together; a watcher that falls behind is ended with
// RESOURCE_EXHAUSTED and trailing metadata naming the seq to resume after (wire_metadata.h).
// Thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "storage/store.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

class WatchHub {
 public:
  struct Options {
    int page_size = 1000;                   // events per store read of the backfill
    size_t max_watcher_bytes = 8u << 20;    // live events one watcher may have waiting
    size_t max_total_bytes = 64u << 20;     // all events waiting to be sent, every watcher
  };
  using Listener = std::function<void(const v1::TimelineEvent&)>;
  // Where live events come from. The listener is called on the timeline writer's thread with
  // every appended event, in seq order, and must not block (IncidentManager::AddListener).
  struct Feed {
    std::function<int(Listener)> subscribe;
    std::function<void(int)> unsubscribe;
  };
  struct Stats {
    uint64_t open = 0;            // streams open now
    uint64_t ended_behind = 0;    // streams ended since start because the watcher fell behind
    uint64_t buffered_bytes = 0;  // events waiting to be sent, all watchers (approximate bytes)
  };

  WatchHub(storage::Store* store, Feed feed, Options options);
  // Call after the gRPC server has shut down (every stream done); stops the reader thread.
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // A stream for an authorized request: the events with seq > request.after_seq() (0: from the
  // first), or with `live_only` those appended from now on. Either way the stream's start seq
  // goes out as initial metadata. With `admit`, the request is not authorized yet: `admit` runs
  // first, on the reader thread (it may read the store), and a non-OK answer ends the stream
  // with that status before anything is sent.
  grpc::ServerWriteReactor<v1::TimelineEvent>* Open(grpc::CallbackServerContext* context,
                                                    const v1::WatchRequest& request,
                                                    bool live_only,
                                                    std::function<absl::Status()> admit = nullptr);
  Stats stats() const;

  // Holds the reader thread, once the reads queued so far are done, until `resume` is notified.
  void PauseReaderForTest(absl::Notification* resume);

 private:
  class Stream;

  void Post(std::function<void()> task);  // runs `task` on the reader thread, in order
  void ReaderLoop();
  // Counts `bytes` against the total budget; false (nothing counted) when it would overflow.
  bool TryReserve(size_t bytes);
  void Release(size_t bytes);

  storage::Store* const store_;
  const Feed feed_;
  const Options options_;
  std::atomic<uint64_t> open_{0};
  std::atomic<uint64_t> ended_behind_{0};
  std::atomic<size_t> buffered_bytes_{0};

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reader_;
};

// The highest seq on the timeline (0 when empty), found with O(log n) one-row reads.
absl::StatusOr<uint64_t> TimelineHead(storage::Store& store);

}  // namespace vigil::controller
