// People and roles: bearer tokens (only their SHA-256 is stored) and what each role may do.
// viewer < responder < commander < admin; each role may do everything the ones below it may.
//   viewer     read: agents, metrics, alerts, incidents, actions, watch, audit verify/export
//   responder  + acknowledge, note, checklist
//   commander  + mitigate, resolve, set severity, propose, approve and reject actions
//   admin      + manage users (list, disable, enable, rotate tokens)
// A token may expire (UserRecord::expires_unix_ms); a disabled user is refused whatever the
// credential. Stateless helpers plus an Authenticator over the Store; thread-safe.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "storage/store.h"

namespace vigil::controller {

enum class Role { kViewer = 0, kResponder = 1, kCommander = 2, kAdmin = 3 };

absl::StatusOr<Role> ParseRole(absl::string_view name);
absl::string_view RoleName(Role role);

// A new random bearer token ("vgt_" + 64 hex digits) and the hash stored for it.
std::string NewToken();
std::string TokenHash(absl::string_view token);

struct Caller {
  std::string name;
  Role role = Role::kViewer;
};

// Remembers tokens it has seen for a short while, so an API call costs a map lookup rather than a
// store read; a user added later is found on first use (on the controller's readers, never on a
// gRPC thread: see AuthenticateCached). What it remembers is dropped at once by Forget() (a
// change through the API) and within a Refresh() period by Refresh() (a change by another
// process, seen through the store's users version). Thread-safe.
class Authenticator {
 public:
  explicit Authenticator(storage::Store* store, absl::Duration cache_for = absl::Seconds(30),
                         const Clock* clock = RealClock::Get())
      : store_(store), cache_for_(cache_for), clock_(clock) {}
  // `authorization` is the request's header value ("Bearer TOKEN"); empty when absent.
  // Unauthenticated: no token, malformed header, unknown token, an expired token (the message
  // says when it expired), a disabled user.
  // May read the store (a token not seen lately): call it off the gRPC threads.
  absl::StatusOr<Caller> Authenticate(absl::string_view authorization) const;
  // The same answer without touching the store when the header alone or the cache decides it
  // (no token, a malformed header, a caller seen lately); nullopt when the store must be asked.
  // Cheap: fit for a gRPC thread.
  std::optional<absl::StatusOr<Caller>> AuthenticateCached(absl::string_view authorization) const;
  // Authenticate() for a token known only by its hash (TokenHash), e.g. one a web session
  // signed in with and checks again on each request: the same answers, the same cache.
  absl::StatusOr<Caller> AuthenticateTokenHash(absl::string_view token_hash) const;
  // The user named by a client certificate's common name that the TLS layer verified (never call
  // it with a name the peer merely claims). Unauthenticated when no user has that name or the
  // user is disabled; the token's expiry does not apply (the certificate carries its own).
  absl::StatusOr<Caller> AuthenticateCertificate(absl::string_view common_name) const;
  // PermissionDenied naming the caller, their role, the role needed and what for.
  static absl::Status Require(const Caller& caller, Role needed, absl::string_view what);

  // Drops every remembered caller: the next call of each reads the store. A lookup that was
  // reading the store while this ran is not remembered either, so nothing read before a change
  // outlives it. Call after changing a user.
  void Forget();
  // Reads the store's users version and calls Forget() when it moved since the last Refresh
  // (true then). Reads the store: call it off the gRPC threads, about once a second.
  absl::StatusOr<bool> Refresh();

 private:
  struct Entry {
    Caller caller;
    absl::Time read_at;     // when it was read from the store
    absl::Time expires_at;  // when the credential stops working (InfiniteFuture: never)
    int64_t expires_unix_ms = 0;
  };
  // The token's hash, or why the header carries no usable token.
  static absl::StatusOr<std::string> TokenHashOf(absl::string_view authorization);
  // The answer cached under `key` while fresh: its caller, or the refusal of an expired token.
  std::optional<absl::StatusOr<Caller>> Lookup(const std::string& key, absl::Time now) const;
  // The caller cached under `key`, else looked up with `find` and cached; Unauthenticated with
  // `unknown` when `find` finds nobody, and for a disabled user or (with `check_expiry`) an
  // expired token.
  absl::StatusOr<Caller> Cached(
      const std::string& key,
      const std::function<absl::StatusOr<std::optional<storage::UserRecord>>()>& find,
      absl::string_view unknown, bool check_expiry) const;
  storage::Store* store_;
  const absl::Duration cache_for_;
  const Clock* clock_;
  mutable absl::Mutex mu_;
  // token hash (or "cn:" + certificate CN) -> what the store said, and when
  mutable std::map<std::string, Entry> cache_ ABSL_GUARDED_BY(mu_);
  // Moves with every Forget(), so a lookup that overlapped one is not cached.
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<int64_t> users_version_ ABSL_GUARDED_BY(mu_);
};

// `vigil-controller users add`: validates the name and role, stores the user, returns the token.
// The token expires `lifetime` after `now_unix_ms` (InfiniteDuration: never).
absl::StatusOr<std::string> AddUser(storage::Store& store, absl::string_view name,
                                    absl::string_view role, int64_t now_unix_ms,
                                    absl::Duration lifetime = absl::InfiniteDuration());

// When a token issued at `now_unix_ms` for `lifetime` expires; 0 (never) for InfiniteDuration.
int64_t ExpiryUnixMillis(int64_t now_unix_ms, absl::Duration lifetime);

// "2026-11-30 20:11:08Z" (UTC), the form refusals and tables use.
std::string FormatUnixMillis(int64_t unix_ms);

}  // namespace vigil::controller
