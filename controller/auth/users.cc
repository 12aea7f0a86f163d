#include "controller/auth/users.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/yaml_util.h"
#include "controller/auth/auth.h"

namespace vigil::controller {
namespace {

absl::StatusOr<storage::UserRecord> FindByName(storage::Store& store, absl::string_view name) {
  ASSIGN_OR_RETURN(std::optional<storage::UserRecord> user, store.FindUserByName(name));
  if (!user.has_value()) {
    return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
  }
  return *std::move(user);
}

// A cell of the table as one printable line: a name or role written into the database by other
// means (sqlite3) cannot move the terminal's cursor or break a row.
std::string Printable(absl::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = '?';
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<absl::Duration> ParseTokenLifetime(absl::string_view text) {
  if (text.empty()) {
    return kDefaultTokenLifetime;
  }
  if (absl::AsciiStrToLower(text) == "never") {
    return absl::InfiniteDuration();
  }
  absl::StatusOr<absl::Duration> lifetime = ParseDurationText(text);
  if (!lifetime.ok() || *lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token lifetime '", text, "' is not a positive duration such as 90d or 12h, or never"));
  }
  if (*lifetime > kMaxTokenLifetime) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token lifetime '", text, "' is longer than ten years; say never if that is meant"));
  }
  return *lifetime;
}

v1::UserInfo ToUserInfo(const storage::UserRecord& user) {
  v1::UserInfo info;
  info.set_name(user.name);
  info.set_role(user.role);
  info.set_created_unix_ms(user.created_unix_ms);
  info.set_expires_unix_ms(user.expires_unix_ms);
  info.set_disabled(user.disabled_unix_ms != 0);
  info.set_disabled_unix_ms(user.disabled_unix_ms);
  info.set_rotated_unix_ms(user.rotated_unix_ms);
  return info;
}

absl::StatusOr<v1::ListUsersResponse> ListUsers(storage::Store& store) {
  ASSIGN_OR_RETURN(std::vector<storage::UserRecord> users, store.ListUsers());
  v1::ListUsersResponse response;
  for (const storage::UserRecord& user : users) {
    *response.add_users() = ToUserInfo(user);
  }
  return response;
}

absl::StatusOr<v1::UserInfo> DisableUser(storage::Store& store, absl::string_view name,
                                         int64_t now_unix_ms) {
  ASSIGN_OR_RETURN(storage::UserRecord user, FindByName(store, name));
  if (user.disabled_unix_ms == 0) {
    // 0 means enabled: a clock at the epoch still disables.
    user.disabled_unix_ms = std::max<int64_t>(now_unix_ms, 1);
    RETURN_IF_ERROR(store.SetUserDisabled(name, user.disabled_unix_ms));
  }
  return ToUserInfo(user);
}

absl::StatusOr<v1::UserInfo> EnableUser(storage::Store& store, absl::string_view name) {
  ASSIGN_OR_RETURN(storage::UserRecord user, FindByName(store, name));
  if (user.disabled_unix_ms != 0) {
    user.disabled_unix_ms = 0;
    RETURN_IF_ERROR(store.SetUserDisabled(name, 0));
  }
  return ToUserInfo(user);
}

absl::StatusOr<v1::RotateUserTokenResponse> RotateUserToken(storage::Store& store,
                                                            absl::string_view name,
                                                            int64_t now_unix_ms,
                                                            absl::Duration lifetime) {
  ASSIGN_OR_RETURN(storage::UserRecord user, FindByName(store, name));
  const std::string token = NewToken();
  user.token_hash = TokenHash(token);
  user.expires_unix_ms = ExpiryUnixMillis(now_unix_ms, lifetime);
  user.rotated_unix_ms = std::max<int64_t>(now_unix_ms, 1);
  RETURN_IF_ERROR(store.ReplaceUserToken(name, user.token_hash, user.expires_unix_ms,
                                         user.rotated_unix_ms));
  v1::RotateUserTokenResponse response;
  *response.mutable_user() = ToUserInfo(user);
  response.set_token(token);
  return response;
}

std::string FormatUsersTable(const v1::ListUsersResponse& users) {
  auto when = [](int64_t unix_ms, const char* none) {
    return unix_ms == 0 ? std::string(none) : FormatUnixMillis(unix_ms);
  };
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "ROLE", "CREATED", "EXPIRES", "DISABLED", "ROTATED"}};
  for (const v1::UserInfo& user : users.users()) {
    rows.push_back({Printable(user.name()), Printable(user.role()),
                    when(user.created_unix_ms(), "-"),
                    when(user.expires_unix_ms(), "never"), when(user.disabled_unix_ms(), "-"),
                    when(user.rotated_unix_ms(), "-")});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      absl::StrAppend(&line, row[i]);
      if (i + 1 < row.size()) {
        line.append(widths[i] - row[i].size() + 3, ' ');
      }
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace vigil::controller
