// ContentHashAhead: the chain format 2 content hashes of a batch of timeline events, computed on a
// thread of its own ahead of a caller that takes them in order. A content hash depends on the
// event's content alone, not on its place in the chain, so the timeline store can link and insert
// event i while event i+k is being hashed: the store's writer thread spent about 12 % of its time
// in those digests (`perf` of store_append_bench), work another core can do.
//
// The caller takes hash i before it changes event i; from then on the helper no longer reads it.
// A hash the helper has not started yet the caller computes itself, so a helper that is late,
// or that could not be started, costs nothing but the parallelism.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/audit/chain_hash.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::audit {

class ContentHashAhead {
 public:
  // `events` must stay alive and unchanged until each one's Take has returned (or this object is
  // destroyed).
  explicit ContentHashAhead(std::vector<const v1::TimelineEvent*> events);
  // Stops the helper after the event it is hashing and waits for it.
  ~ContentHashAhead();
  ContentHashAhead(const ContentHashAhead&) = delete;
  ContentHashAhead& operator=(const ContentHashAhead&) = delete;

  // TimelineContentHash(*events[i]). One thread calls it, for i = 0, 1, 2, ... in order.
  std::string Take(size_t i);

  // How many hashes the helper computed (the rest the caller did): for tests and figures.
  size_t hashed_ahead() const { return hashed_ahead_.load(std::memory_order_relaxed); }

 private:
  void Run();

  const std::vector<const v1::TimelineEvent*> events_;
  std::vector<std::string> hashes_;             // hashes_[i] is the helper's once ready_[i]
  std::unique_ptr<std::atomic<bool>[]> ready_;  // release by the helper, acquire by Take
  std::atomic<size_t> claimed_{0};              // the next index nobody has started
  std::atomic<size_t> hashed_ahead_{0};
  TimelineHasher hasher_;  // the caller's, for the hashes it does itself
  std::thread helper_;     // last: starts once the rest is built
};

}  // namespace vigil::audit
