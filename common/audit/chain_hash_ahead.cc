#include "common/audit/chain_hash_ahead.h"

#include <chrono>
#include <limits>
#include <system_error>
#include <utility>

namespace vigil::audit {

ChainHashAhead::ChainHashAhead(std::vector<const v1::TimelineEvent*> events, uint64_t first_seq,
                               std::string prev_hash, std::chrono::microseconds wait_for_helper)
    : events_(std::move(events)),
      first_seq_(first_seq),
      head_hash_(std::move(prev_hash)),
      wait_for_helper_(wait_for_helper),
      hashes_(events_.size()),
      state_(std::make_unique<std::atomic<State>[]>(events_.size())) {
  for (size_t i = 0; i < events_.size(); ++i) {
    state_[i].store(kPending, std::memory_order_relaxed);
  }
  try {
    helper_ = std::thread([this] { Run(); });
  } catch (const std::system_error&) {
    // No thread to be had (a process at its limit): Take computes every hash itself.
  }
}

ChainHashAhead::~ChainHashAhead() {
  // Whatever the helper claims next is past the end: it stops after the event it is on.
  claimed_.store(std::numeric_limits<size_t>::max() / 2, std::memory_order_relaxed);
  if (helper_.joinable()) {
    helper_.join();
  }
}

void ChainHashAhead::Run() {
  TimelineHasher hasher;  // the helper's own: a hasher belongs to one thread
  std::string prev = head_hash_;
  for (size_t next = 0;;) {
    const size_t i = claimed_.fetch_add(1, std::memory_order_relaxed);
    if (i >= events_.size()) {
      return;
    }
    if (i != next) {
      // The caller computed event i - 1 (and maybe some before it): link to its hash, which it
      // publishes before its Take returns, so this waits one digest at most.
      while (state_[i - 1].load(std::memory_order_acquire) != kByCaller) {
        std::this_thread::yield();
      }
      prev = hashes_[i - 1];
    }
    prev = hasher.Link(prev, first_seq_ + i, hasher.ContentHash(*events_[i]));
    hashes_[i] = prev;
    hashed_ahead_.fetch_add(1, std::memory_order_relaxed);
    state_[i].store(kByHelper, std::memory_order_release);
    next = i + 1;
  }
}

std::string ChainHashAhead::Take(size_t i, absl::string_view prev_hash) {
  State state = state_[i].load(std::memory_order_acquire);
  if (state == kPending) {
    const auto since = std::chrono::steady_clock::now();
    while ((state = state_[i].load(std::memory_order_acquire)) == kPending) {
      // Every index before i is claimed (Take runs in order), so claimed_ is i unless the helper
      // has started on event i (then it is one link from done). Not started: wait while this
      // batch's allowance lasts (the helper's thread starting, or a moment off its core), then
      // compute it here.
      if (claimed_.load(std::memory_order_relaxed) == i &&
          (!helper_.joinable() ||
           waited_ + (std::chrono::steady_clock::now() - since) >= wait_for_helper_)) {
        size_t expected = i;
        if (claimed_.compare_exchange_strong(expected, i + 1, std::memory_order_relaxed)) {
          waited_ += std::chrono::steady_clock::now() - since;
          std::string hash =
              hasher_.Link(prev_hash, first_seq_ + i, hasher_.ContentHash(*events_[i]));
          hashes_[i] = hash;  // the helper links its next event to it
          state_[i].store(kByCaller, std::memory_order_release);
          return hash;
        }
      }
      std::this_thread::yield();
    }
    waited_ += std::chrono::steady_clock::now() - since;
  }
  return std::move(hashes_[i]);  // kByHelper: the helper is done with it
}

}  // namespace vigil::audit
