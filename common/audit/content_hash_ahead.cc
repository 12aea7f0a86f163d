#include "common/audit/content_hash_ahead.h"

#include <limits>
#include <system_error>
#include <utility>

namespace vigil::audit {

ContentHashAhead::ContentHashAhead(std::vector<const v1::TimelineEvent*> events)
    : events_(std::move(events)),
      hashes_(events_.size()),
      ready_(std::make_unique<std::atomic<bool>[]>(events_.size())) {
  for (size_t i = 0; i < events_.size(); ++i) {
    ready_[i].store(false, std::memory_order_relaxed);
  }
  try {
    helper_ = std::thread([this] { Run(); });
  } catch (const std::system_error&) {
    // No thread to be had (a process at its limit): Take computes every hash itself.
  }
}

ContentHashAhead::~ContentHashAhead() {
  // Whatever the helper claims next is past the end: it stops after the event it is on.
  claimed_.store(std::numeric_limits<size_t>::max() / 2, std::memory_order_relaxed);
  if (helper_.joinable()) {
    helper_.join();
  }
}

void ContentHashAhead::Run() {
  TimelineHasher hasher;  // the helper's own: a hasher belongs to one thread
  while (true) {
    const size_t i = claimed_.fetch_add(1, std::memory_order_relaxed);
    if (i >= events_.size()) {
      return;
    }
    hashes_[i] = hasher.ContentHash(*events_[i]);
    hashed_ahead_.fetch_add(1, std::memory_order_relaxed);
    ready_[i].store(true, std::memory_order_release);
  }
}

std::string ContentHashAhead::Take(size_t i) {
  if (ready_[i].load(std::memory_order_acquire)) {
    return std::move(hashes_[i]);
  }
  // Every index before i is claimed (Take runs in order), so claimed_ is i unless the helper has
  // started on i: then it is the caller's to compute.
  size_t expected = i;
  if (claimed_.compare_exchange_strong(expected, i + 1, std::memory_order_relaxed)) {
    return hasher_.ContentHash(*events_[i]);
  }
  // The helper is hashing event i now: one digest at most.
  while (!ready_[i].load(std::memory_order_acquire)) {
    std::this_thread::yield();
  }
  return std::move(hashes_[i]);
}

}  // namespace vigil::audit
