// People over time: listing users, disabling and enabling them, and replacing their tokens.
// Shared by `vigil-controller users ...` (run on the database, beside a running controller or
// not) and the admin RPCs of ControlService, so both say the same things. A token lives
// kDefaultTokenLifetime unless told otherwise. Stateless functions over a Store; thread-safe as
// the Store is.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/store.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::controller {

// New tokens (users add, users rotate) expire after 90 days unless told otherwise ("never"
// included): a token copied into a script or a laptop does not work forever by default.
inline constexpr absl::Duration kDefaultTokenLifetime = absl::Hours(24 * 90);
// Longer is refused: ten years is "never" by another name, and "never" says so.
inline constexpr absl::Duration kMaxTokenLifetime = absl::Hours(24 * 3660);

// "90d", "12h", "30m", or "never" (InfiniteDuration); empty: kDefaultTokenLifetime.
// InvalidArgument naming the text when it is none of these, not positive, or too long.
absl::StatusOr<absl::Duration> ParseTokenLifetime(absl::string_view text);

// What admins see of a user (never the token's hash).
v1::UserInfo ToUserInfo(const storage::UserRecord& user);

// Every user, by name.
absl::StatusOr<v1::ListUsersResponse> ListUsers(storage::Store& store);
// Disables `name` at `now_unix_ms`: every credential of theirs is refused. A disabled user stays
// as they were (the first time is kept). NotFound: "no user named 'NAME'".
absl::StatusOr<v1::UserInfo> DisableUser(storage::Store& store, absl::string_view name,
                                         int64_t now_unix_ms);
// Enables `name` again; their current token works unless it expired. NotFound as above.
absl::StatusOr<v1::UserInfo> EnableUser(storage::Store& store, absl::string_view name);
// Gives `name` a new token expiring `lifetime` from now (InfiniteDuration: never); the old token
// matches nobody from then on. The token is in the answer, once; only its hash is stored.
// Rotation does not enable a disabled user. NotFound as above.
absl::StatusOr<v1::RotateUserTokenResponse> RotateUserToken(storage::Store& store,
                                                            absl::string_view name,
                                                            int64_t now_unix_ms,
                                                            absl::Duration lifetime);

// The table `users list` prints: NAME, ROLE, CREATED, EXPIRES, DISABLED, ROTATED (UTC times;
// "never" and "-" for none), columns aligned.
std::string FormatUsersTable(const v1::ListUsersResponse& users);

}  // namespace vigil::controller
