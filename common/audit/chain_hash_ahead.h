// ChainHashAhead: the chain format 2 hashes of a batch of timeline events about to be appended,
// computed and linked on a thread of its own ahead of a caller that takes them in order. The
// timeline store inserts event i while event i+k is being hashed: its writer thread spent about
// 12 % of its time in the content digests and another 10 % in the links (`perf` of
// store_append_bench), work another core can do. The helper links from the head it is given,
// which must be the one the caller continues the chain from.
//
// The caller takes event i's hash before it changes event i; from then on the helper no longer
// reads it. A caller that catches up waits for the helper, at most kWaitForTheHelper in all
// per batch (the helper's thread starting, a moment off its core); past that, a hash the helper
// has not started yet the caller computes itself, and the helper links its next one to the
// caller's. So a helper that is late, or that could not be started, costs the parallelism and
// that one allowance.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/audit/chain_hash.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::audit {

class ChainHashAhead {
 public:
  // What a batch's caller may spend waiting for the helper in all: about a thread's start on an
  // idle host, and 1-2 % of a commit of the timeline writer's largest batches.
  static constexpr std::chrono::microseconds kWaitForTheHelper{200};

  // events[i] is to be stored as seq `first_seq` + i, the first linked after `prev_hash`. The
  // events must stay alive and unchanged until each one's Take has returned (or this object is
  // destroyed).
  // `wait_for_helper`: the caller's allowance (tests give 0 to make it take turns with the
  // helper from the first event).
  ChainHashAhead(std::vector<const v1::TimelineEvent*> events, uint64_t first_seq,
                 std::string prev_hash,
                 std::chrono::microseconds wait_for_helper = kWaitForTheHelper);
  // Stops the helper after the event it is hashing and waits for it.
  ~ChainHashAhead();
  ChainHashAhead(const ChainHashAhead&) = delete;
  ChainHashAhead& operator=(const ChainHashAhead&) = delete;

  // The format 2 hash of events[i] as seq first_seq + i after `prev_hash`, which is what Take
  // gave for i - 1 (the head given to the constructor for i = 0): TimelineHasher::Link(prev_hash,
  // first_seq + i, TimelineContentHash(*events[i])). One thread calls it, for i = 0, 1, 2, ... in
  // order.
  std::string Take(size_t i, absl::string_view prev_hash);

  // How many hashes the helper computed (the rest the caller did): for tests and figures.
  size_t hashed_ahead() const { return hashed_ahead_.load(std::memory_order_relaxed); }

 private:
  // Who computed hashes_[i]: the helper (the caller takes it), or the caller (the helper may
  // link event i + 1 to it).
  enum State : uint8_t { kPending, kByHelper, kByCaller };

  void Run();

  const std::vector<const v1::TimelineEvent*> events_;
  const uint64_t first_seq_;
  const std::string head_hash_;
  const std::chrono::microseconds wait_for_helper_;
  std::vector<std::string> hashes_;  // event i's hash, once state_[i] says who made it
  // Stored (release) by whoever made hashes_[i], loaded (acquire) by the other.
  std::unique_ptr<std::atomic<State>[]> state_;
  std::atomic<size_t> claimed_{0};               // the next index nobody has started
  std::atomic<size_t> hashed_ahead_{0};
  TimelineHasher hasher_;  // the caller's, for the hashes it does itself
  std::chrono::steady_clock::duration waited_{};  // the caller's, for its allowance
  std::thread helper_;     // last: starts once the rest is built
};

}  // namespace vigil::audit
