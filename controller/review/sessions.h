// Sign-in state of the review page: web sessions kept in memory (random 256-bit ids, bounded in
// number, idle and absolute expiry) and a per-peer limit on failed sign-ins. Neither knows about
// users beyond a name, a role and the hash of the token signed in with, which the caller checks
// again on each request. Both are thread-safe; time comes from the injected Clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace vigil::controller::review {

struct Session {
  std::string id;  // 64 hex digits from 32 random bytes; the cookie's value
  std::string user;
  std::string role;        // as the user's record names it
  std::string token_hash;  // of the token signed in with: checked again on every request
  absl::Time created;
  absl::Time last_used;
};

class SessionStore {
 public:
  struct Options {
    size_t max_sessions = 10'000;  // beyond: the session unused longest is dropped
    absl::Duration idle_timeout = absl::Minutes(30);
    absl::Duration max_lifetime = absl::Hours(12);
  };
  SessionStore(Options options, const Clock* clock) : options_(options), clock_(clock) {}

  // A new session for the user; never fails (no entropy aborts, as for tokens).
  Session Create(std::string user, std::string role, std::string token_hash);
  // The live session with this id, marked used now; nullopt for an unknown, malformed, idle or
  // too old one (which is dropped).
  std::optional<Session> Use(const std::string& id);
  // Drops the session; false when there was none.
  bool Remove(const std::string& id);
  size_t size() const;
  uint64_t evicted() const;  // sessions dropped at the cap since construction

 private:
  using Order = std::list<Session>;  // least recently used first
  bool Expired(const Session& s, absl::Time now) const;
  const Options options_;
  const Clock* clock_;
  mutable absl::Mutex mu_;
  Order order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Order::iterator> by_id_ ABSL_GUARDED_BY(mu_);
  uint64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
};

// Failed sign-ins per peer address within a window: at the limit, further attempts are refused
// without looking at the token until the window ends. Bounded: at most `max_peers` addresses are
// tracked (beyond, the one whose window started first is forgotten).
class SignInLimiter {
 public:
  struct Options {
    int max_failures = 5;
    absl::Duration window = absl::Minutes(1);
    size_t max_peers = 10'000;
  };
  SignInLimiter(Options options, const Clock* clock) : options_(options), clock_(clock) {}

  // Zero when `peer` may try now; otherwise how long until it may.
  absl::Duration RetryAfter(const std::string& peer) const;
  void RecordFailure(const std::string& peer);
  // A successful sign-in does not reset the count: one good token must not buy more guesses.

 private:
  struct Entry {
    absl::Time window_start;
    int failures = 0;
  };
  const Options options_;
  const Clock* clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> peers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace vigil::controller::review
