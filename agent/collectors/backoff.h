// Shared by the service collectors: retry pacing for a server that is down, and one log line per
// change between up and down. Not thread-safe: one collector thread each.
#pragma once

#include <spdlog/spdlog.h>

#include <string>

#include "absl/time/time.h"
#include "common/logging.h"

namespace vigil::agent {

// Exponential retry delay from 1 s to 30 s; Reset on success.
class Backoff {
 public:
  bool Ready(absl::Time now) const { return now >= next_; }
  void Failed(absl::Time now) {
    delay_ =
        delay_ == absl::ZeroDuration() ? absl::Seconds(1) : std::min(delay_ * 2, absl::Seconds(30));
    next_ = now + delay_;
  }
  void Reset() {
    delay_ = absl::ZeroDuration();
    next_ = absl::InfinitePast();
  }

 private:
  absl::Duration delay_ = absl::ZeroDuration();
  absl::Time next_ = absl::InfinitePast();
};

// Logs "X is down: why" once when a source goes down and "X is up" once when it comes back.
class UpState {
 public:
  explicit UpState(std::string what) : what_(std::move(what)) {}
  void Up() {
    if (state_ != kUp) {
      spdlog::info("{} is up", what_);
    }
    state_ = kUp;
  }
  void Down(absl::string_view why) {
    if (state_ != kDown) {
      spdlog::warn("{} is down: {}; retrying with backoff", what_, why);
    }
    state_ = kDown;
  }

 private:
  enum { kUnknown, kUp, kDown } state_ = kUnknown;
  std::string what_;
};

}  // namespace vigil::agent
