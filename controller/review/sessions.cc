#include "controller/review/sessions.h"

#include <openssl/rand.h>

#include <cstdlib>

#include "common/ids.h"

namespace vigil::controller::review {
namespace {

std::string NewSessionId() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    std::abort();  // no entropy: never hand out a guessable session
  }
  return HexEncode(absl::string_view(reinterpret_cast<char*>(bytes), sizeof(bytes)));
}

}  // namespace

bool SessionStore::Expired(const Session& s, absl::Time now) const {
  return now - s.last_used >= options_.idle_timeout || now - s.created >= options_.max_lifetime;
}

Session SessionStore::Create(std::string user, std::string role, std::string token_hash) {
  const absl::Time now = clock_->Now();
  Session session{.id = NewSessionId(),
                  .user = std::move(user),
                  .role = std::move(role),
                  .token_hash = std::move(token_hash),
                  .created = now,
                  .last_used = now};
  absl::MutexLock lock(&mu_);
  // The least recently used come first: drop the expired among them, then make room.
  while (!order_.empty() && Expired(order_.front(), now)) {
    by_id_.erase(order_.front().id);
    order_.pop_front();
  }
  while (!order_.empty() && order_.size() >= options_.max_sessions) {
    by_id_.erase(order_.front().id);
    order_.pop_front();
    ++evicted_;
  }
  order_.push_back(session);
  by_id_[session.id] = std::prev(order_.end());
  return session;
}

std::optional<Session> SessionStore::Use(const std::string& id) {
  if (id.size() != 64) {
    return std::nullopt;  // not one of ours; nothing to look up
  }
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return std::nullopt;
  }
  if (Expired(*it->second, now)) {
    order_.erase(it->second);
    by_id_.erase(it);
    return std::nullopt;
  }
  it->second->last_used = now;
  order_.splice(order_.end(), order_, it->second);  // iterators stay valid
  return *it->second;
}

bool SessionStore::Remove(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    return false;
  }
  order_.erase(it->second);
  by_id_.erase(it);
  return true;
}

size_t SessionStore::size() const {
  absl::MutexLock lock(&mu_);
  return by_id_.size();
}

uint64_t SessionStore::evicted() const {
  absl::MutexLock lock(&mu_);
  return evicted_;
}

absl::Duration SignInLimiter::RetryAfter(const std::string& peer) const {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end() || now - it->second.window_start >= options_.window ||
      it->second.failures < options_.max_failures) {
    return absl::ZeroDuration();
  }
  return it->second.window_start + options_.window - now;
}

void SignInLimiter::RecordFailure(const std::string& peer) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(peer);
  if (it == peers_.end()) {
    if (peers_.size() >= options_.max_peers) {
      // Forget the windows that ended; when none has, the one that started first.
      absl::erase_if(peers_, [&](const auto& entry) {
        return now - entry.second.window_start >= options_.window;
      });
      if (peers_.size() >= options_.max_peers) {
        auto oldest = peers_.begin();
        for (auto p = peers_.begin(); p != peers_.end(); ++p) {
          if (p->second.window_start < oldest->second.window_start) {
            oldest = p;
          }
        }
        peers_.erase(oldest);
      }
    }
    it = peers_.emplace(peer, Entry{now, 0}).first;
  }
  if (now - it->second.window_start >= options_.window) {
    it->second = Entry{now, 0};
  }
  ++it->second.failures;
}

}  // namespace vigil::controller::review
