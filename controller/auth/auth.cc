#include "controller/auth/auth.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

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
      *hash, [&] { return store_->FindUserByTokenHash(*hash); }, "unknown token");
}

std::optional<absl::StatusOr<Caller>> Authenticator::AuthenticateCached(
    absl::string_view authorization) const {
  absl::StatusOr<std::string> hash = TokenHashOf(authorization);
  if (!hash.ok()) {
    return absl::StatusOr<Caller>(hash.status());
  }
  if (std::optional<Caller> caller = Lookup(*hash, absl::Now()); caller.has_value()) {
    return absl::StatusOr<Caller>(std::move(*caller));
  }
  return std::nullopt;
}

std::optional<Caller> Authenticator::Lookup(const std::string& key, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  if (auto it = cache_.find(key); it != cache_.end() && now - it->second.second < cache_for_) {
    return it->second.first;
  }
  return std::nullopt;
}

absl::StatusOr<Caller> Authenticator::Cached(
    const std::string& key,
    const std::function<absl::StatusOr<std::optional<storage::UserRecord>>()>& find,
    absl::string_view unknown) const {
  const absl::Time now = absl::Now();
  if (std::optional<Caller> caller = Lookup(key, now); caller.has_value()) {
    return *std::move(caller);
  }
  absl::StatusOr<std::optional<storage::UserRecord>> user = find();
  if (!user.ok()) {
    return user.status();
  }
  if (!user->has_value()) {
    return absl::UnauthenticatedError(unknown);
  }
  absl::StatusOr<Role> role = ParseRole((*user)->role);
  if (!role.ok()) {
    return absl::InternalError(
        absl::StrCat("user ", (*user)->name, " has a bad role in the store"));
  }
  Caller caller{(*user)->name, *role};
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= 10'000) {
    cache_.clear();  // bounded: unknown callers are never cached, known ones are few
  }
  cache_[key] = {caller, now};
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
      absl::StrCat("client certificate CN '", common_name, "' is not a user"));
}

absl::Status Authenticator::Require(const Caller& caller, Role needed, absl::string_view what) {
  if (caller.role >= needed) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(caller.name, " is a ", RoleName(caller.role),
                                                  "; ", what, " needs the ", RoleName(needed),
                                                  " role or above"));
}

absl::StatusOr<std::string> AddUser(storage::Store& store, absl::string_view name,
                                    absl::string_view role, int64_t now_unix_ms) {
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
  storage::UserRecord record{std::string(name), std::string(role), TokenHash(token), now_unix_ms};
  if (absl::Status s = store.AddUser(record); !s.ok()) {
    return s;
  }
  return token;
}

}  // namespace vigil::controller
