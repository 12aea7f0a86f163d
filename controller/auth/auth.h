// People and roles: bearer tokens (only their SHA-256 is stored) and what each role may do.
// viewer < responder < commander < admin; each role may do everything the ones below it may.
//   viewer     read: agents, metrics, alerts, incidents, actions, watch, audit verify/export
//   responder  + acknowledge, note, checklist
//   commander  + mitigate, resolve, set severity, propose, approve and reject actions
//   admin      + manage users
// Stateless helpers plus an Authenticator over the Store; thread-safe.
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
// gRPC thread: see AuthenticateCached). Thread-safe.
class Authenticator {
 public:
  explicit Authenticator(storage::Store* store, absl::Duration cache_for = absl::Seconds(30))
      : store_(store), cache_for_(cache_for) {}
  // `authorization` is the request's header value ("Bearer TOKEN"); empty when absent.
  // Unauthenticated: no token, malformed header, unknown token.
  // May read the store (a token not seen lately): call it off the gRPC threads.
  absl::StatusOr<Caller> Authenticate(absl::string_view authorization) const;
  // The same answer without touching the store when the header alone or the cache decides it
  // (no token, a malformed header, a caller seen lately); nullopt when the store must be asked.
  // Cheap: fit for a gRPC thread.
  std::optional<absl::StatusOr<Caller>> AuthenticateCached(absl::string_view authorization) const;
  // The user named by a client certificate's common name that the TLS layer verified (never call
  // it with a name the peer merely claims). Unauthenticated when no user has that name.
  absl::StatusOr<Caller> AuthenticateCertificate(absl::string_view common_name) const;
  // PermissionDenied naming the caller, their role, the role needed and what for.
  static absl::Status Require(const Caller& caller, Role needed, absl::string_view what);

 private:
  // The token's hash, or why the header carries no usable token.
  static absl::StatusOr<std::string> TokenHashOf(absl::string_view authorization);
  // The caller cached under `key` if still fresh.
  std::optional<Caller> Lookup(const std::string& key, absl::Time now) const;
  // The caller cached under `key`, else looked up with `find` and cached; Unauthenticated with
  // `unknown` when `find` finds nobody.
  absl::StatusOr<Caller> Cached(
      const std::string& key,
      const std::function<absl::StatusOr<std::optional<storage::UserRecord>>()>& find,
      absl::string_view unknown) const;
  storage::Store* store_;
  const absl::Duration cache_for_;
  mutable absl::Mutex mu_;
  // token hash -> (caller, when it was read from the store)
  mutable std::map<std::string, std::pair<Caller, absl::Time>> cache_ ABSL_GUARDED_BY(mu_);
};

// `vigil-controller users add`: validates the name and role, stores the user, returns the token.
absl::StatusOr<std::string> AddUser(storage::Store& store, absl::string_view name,
                                    absl::string_view role, int64_t now_unix_ms);

}  // namespace vigil::controller
