#include "controller/auth/auth.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/ids.h"
#include "re2/re2.h"

namespace vigil::controller {

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  if (name == "viewer") {
    return Role::kViewer;
  }
  if (name == "responder") {
    return Role::kResponder;
  }
  if (name == "commander") {
    return Role::kCommander;
  }
  if (name == "admin") {
    return Role::kAdmin;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("role '", name, "' is not one of: viewer, responder, commander, admin"));
}

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kResponder:
      return "responder";
    case Role::kCommander:
      return "commander";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

std::string NewToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    std::abort();  // no entropy: never hand out a guessable token
  }
  return absl::StrCat("vgt_",
                      HexEncode(absl::string_view(reinterpret_cast<char*>(bytes), sizeof(bytes))));
}

std::string TokenHash(absl::string_view token) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(token.data(), token.size(), digest, &size, EVP_sha256(), nullptr);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(digest), size));
}

absl::StatusOr<std::string> Authenticator::TokenHashOf(absl::string_view authorization) {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "no token: pass --token or set VIGIL_TOKEN (an admin makes one with "
        "'vigil-controller users add NAME --role ROLE')");
  }
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") || token.empty()) {
    return absl::UnauthenticatedError("the authorization header must be 'Bearer TOKEN'");
  }
  return TokenHash(token);
}

absl::StatusOr<Caller> Authenticator::Authenticate(absl::string_view authorization) const {
  absl::StatusOr<std::string> hash = TokenHashOf(authorization);
  if (!hash.ok()) {
    return hash.status();
  }
  return Cached(
      *hash, [&] { return store_->FindUserByTokenHash(*hash); }, "unknown token",
      /*check_expiry=*/true);
}

absl::StatusOr<Caller> Authenticator::AuthenticateTokenHash(absl::string_view token_hash) const {
  // Only a digest is a key of the token cache ("cn:..." keys are certificates').
  auto lower_hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  if (token_hash.size() != 64 || !std::all_of(token_hash.begin(), token_hash.end(), lower_hex)) {
    return absl::UnauthenticatedError("malformed token hash");
  }
  const std::string hash(token_hash);
  return Cached(
      hash, [&] { return store_->FindUserByTokenHash(hash); }, "unknown token",
      /*check_expiry=*/true);
}

std::optional<absl::StatusOr<Caller>> Authenticator::AuthenticateCached(
    absl::string_view authorization) const {
  absl::StatusOr<std::string> hash = TokenHashOf(authorization);
  if (!hash.ok()) {
    return absl::StatusOr<Caller>(hash.status());
  }
  return Lookup(*hash, clock_->Now());
}

namespace {

absl::Status Expired(absl::string_view name, int64_t expires_unix_ms) {
  return absl::UnauthenticatedError(
      absl::StrCat("the token of user ", name, " expired at ", FormatUnixMillis(expires_unix_ms),
                   "; an admin issues a new one with 'vigil users rotate ", name, "'"));
}

}  // namespace

std::optional<absl::StatusOr<Caller>> Authenticator::Lookup(const std::string& key,
                                                            absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(key);
  if (it == cache_.end() || now - it->second.read_at >= cache_for_) {
    return std::nullopt;
  }
  if (now >= it->second.expires_at) {
    absl::Status expired = Expired(it->second.caller.name, it->second.expires_unix_ms);
    cache_.erase(it);
    return absl::StatusOr<Caller>(std::move(expired));
  }
  return absl::StatusOr<Caller>(it->second.caller);
}

absl::StatusOr<Caller> Authenticator::Cached(
    const std::string& key,
    const std::function<absl::StatusOr<std::optional<storage::UserRecord>>()>& find,
    absl::string_view unknown, bool check_expiry) const {
  const absl::Time now = clock_->Now();
  if (std::optional<absl::StatusOr<Caller>> known = Lookup(key, now); known.has_value()) {
    return *std::move(known);
  }
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    generation = generation_;
  }
  absl::StatusOr<std::optional<storage::UserRecord>> user = find();
  if (!user.ok()) {
    return user.status();
  }
  if (!user->has_value()) {
    return absl::UnauthenticatedError(unknown);
  }
  const storage::UserRecord& record = **user;
  if (record.disabled_unix_ms != 0) {
    return absl::UnauthenticatedError(
        absl::StrCat("user ", record.name, " is disabled (since ",
                     FormatUnixMillis(record.disabled_unix_ms),
                     "); an admin enables them again with 'vigil users enable ", record.name, "'"));
  }
  Entry entry;
  entry.expires_at = absl::InfiniteFuture();
  if (check_expiry && record.expires_unix_ms != 0) {
    entry.expires_at = absl::FromUnixMillis(record.expires_unix_ms);
    entry.expires_unix_ms = record.expires_unix_ms;
    if (now >= entry.expires_at) {
      return Expired(record.name, record.expires_unix_ms);
    }
  }
  absl::StatusOr<Role> role = ParseRole(record.role);
  if (!role.ok()) {
    return absl::InternalError(absl::StrCat("user ", record.name, " has a bad role in the store"));
  }
  entry.caller = Caller{record.name, *role};
  entry.read_at = now;
  Caller caller = entry.caller;
  absl::MutexLock lock(&mu_);
  if (generation != generation_) {
    return caller;  // the users changed while we read: answer this call, remember nothing
  }
  if (cache_.size() >= 10'000) {
    cache_.clear();  // bounded: unknown callers are never cached, known ones are few
  }
  cache_[key] = std::move(entry);
  return caller;
}

absl::StatusOr<Caller> Authenticator::AuthenticateCertificate(absl::string_view common_name) const {
  if (common_name.empty()) {
    return absl::UnauthenticatedError("no client certificate");
  }
  // Cached beside the token hashes; "cn:" cannot begin a hex digest.
  const std::string key = absl::StrCat("cn:", common_name);
  return Cached(
      key, [&] { return store_->FindUserByName(common_name); },
      absl::StrCat("client certificate CN '", common_name, "' is not a user"),
      /*check_expiry=*/false);
}

void Authenticator::Forget() {
  absl::MutexLock lock(&mu_);
  cache_.clear();
  ++generation_;
}

absl::StatusOr<bool> Authenticator::Refresh() {
  absl::StatusOr<int64_t> version = store_->UsersVersion();
  if (!version.ok()) {
    return version.status();
  }
  {
    absl::MutexLock lock(&mu_);
    const bool moved = users_version_.has_value() && *users_version_ != *version;
    users_version_ = *version;
    if (!moved) {
      return false;
    }
  }
  Forget();
  return true;
}

absl::Status Authenticator::Require(const Caller& caller, Role needed, absl::string_view what) {
  if (caller.role >= needed) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(caller.name, " is a ", RoleName(caller.role),
                                                  "; ", what, " needs the ", RoleName(needed),
                                                  " role or above"));
}

std::string FormatUnixMillis(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

int64_t ExpiryUnixMillis(int64_t now_unix_ms, absl::Duration lifetime) {
  if (lifetime == absl::InfiniteDuration()) {
    return 0;
  }
  return now_unix_ms + absl::ToInt64Milliseconds(lifetime);
}

absl::StatusOr<std::string> AddUser(storage::Store& store, absl::string_view name,
                                    absl::string_view role, int64_t now_unix_ms,
                                    absl::Duration lifetime) {
  if (!RE2::FullMatch(re2::StringPiece(name.data(), name.size()),
                      "[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")) {
    return absl::InvalidArgumentError(
        absl::StrCat("user name '", name, "' must be 1-64 letters, digits, '.', '_', '@' or '-'"));
  }
  absl::StatusOr<Role> parsed = ParseRole(role);
  if (!parsed.ok()) {
    return parsed.status();
  }
  const std::string token = NewToken();
  storage::UserRecord record{.name = std::string(name),
                             .role = std::string(role),
                             .token_hash = TokenHash(token),
                             .created_unix_ms = now_unix_ms,
                             .expires_unix_ms = ExpiryUnixMillis(now_unix_ms, lifetime)};
  if (absl::Status s = store.AddUser(record); !s.ok()) {
    return s;
  }
  return token;
}

}  // namespace vigil::controller
