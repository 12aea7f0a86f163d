#include "controller/api/read_pool.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace vigil::controller {
namespace {

ReadPool::Options Sane(ReadPool::Options options) {
  options.threads = std::max(options.threads, 2);
  options.max_queued = std::max<size_t>(options.max_queued, 1);
  return options;
}

}  // namespace

ReadPool::ReadPool(Options options)
    : options_(Sane(options)), max_heavy_running_(options_.threads - 1) {
  threads_.reserve(options_.threads);
  for (int i = 0; i < options_.threads; ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "vigil-reader");  // as top and perf show it
      Loop();
    });
  }
}

ReadPool::~ReadPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) {
    t.join();
  }
}

absl::Status ReadPool::Submit(Lane lane, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (light_.size() + heavy_.size() >= options_.max_queued) {
    ++refused_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "the controller's store readers are busy (", options_.max_queued,
        " reads waiting for ", options_.threads, " reader threads); try again shortly"));
  }
  (lane == Lane::kHeavy ? heavy_ : light_).push_back(std::move(task));
  return absl::OkStatus();
}

ReadPool::Stats ReadPool::stats() const {
  absl::MutexLock lock(&mu_);
  return Stats{.queued = light_.size() + heavy_.size(),
               .running = static_cast<uint64_t>(running_),
               .refused = refused_,
               .done = done_};
}

void ReadPool::Loop() {
  while (true) {
    std::function<void()> task;
    bool heavy = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !light_.empty() || (!heavy_.empty() && heavy_running_ < max_heavy_running_) ||
               (stopping_ && heavy_.empty());
      };
      mu_.Await(absl::Condition(&ready));
      if (!light_.empty()) {
        task = std::move(light_.front());
        light_.pop_front();
      } else if (!heavy_.empty()) {
        task = std::move(heavy_.front());
        heavy_.pop_front();
        heavy = true;
        ++heavy_running_;
      } else {
        return;  // stopping, and nothing left to run
      }
      ++running_;
    }
    task();
    task = nullptr;  // whatever it captured goes before it counts as done
    absl::MutexLock lock(&mu_);
    --running_;
    ++done_;
    if (heavy) {
      --heavy_running_;
    }
  }
}

}  // namespace vigil::controller
