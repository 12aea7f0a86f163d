#include "controller/timeline/timeline_writer.h"

#include <spdlog/spdlog.h>

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/synchronization/notification.h"

namespace vigil::controller {

std::string FailureCause(const absl::Status& status) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
}

TimelineWriter::TimelineWriter(storage::Store* store, const Clock* clock, Options options)
    : store_(store), clock_(clock), options_(options) {}

TimelineWriter::~TimelineWriter() { Stop(); }

void TimelineWriter::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) {
    return;
  }
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

absl::Status TimelineWriter::Refusal() {
  return absl::UnavailableError("the controller is stopping: the change was not made");
}

bool TimelineWriter::PastDeadline() const {
  return absl::GetCurrentTimeNanos() >= stop_by_ns_.load(std::memory_order_relaxed);
}

void TimelineWriter::Stop() { Stop(options_.stop_deadline); }

void TimelineWriter::Stop(absl::Duration deadline) {
  std::deque<Unit> refused;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      stopping_ = true;
      stop_by_ns_.store(absl::ToUnixNanos(absl::Now() + deadline), std::memory_order_relaxed);
    }
    if (!started_ && !stopped_) {
      // Never started: nothing will run what is queued.
      stopped_ = true;
      refused.swap(queue_);
    }
  }
  Refuse(refused);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
  }
}

void TimelineWriter::Refuse(std::deque<Unit>& units) {
  if (units.empty()) {
    return;
  }
  // A `done` that submits again is refused on the spot, on this thread, under the lock it holds.
  thread_local bool refusing = false;
  std::optional<absl::MutexLock> lock;
  if (!refusing) {
    lock.emplace(&refuse_mu_);
  }
  const bool outer = !refusing;
  refusing = true;
  for (Unit& unit : units) {
    if (unit.done) {
      unit.done(Refusal());
    }
  }
  units.clear();
  if (outer) {
    refusing = false;
  }
}

void TimelineWriter::Submit(Work work, Done done) {
  std::deque<Unit> refused;
  {
    absl::MutexLock lock(&mu_);
    if (!stopped_) {
      queue_.push_back(Unit{std::move(work), std::move(done)});
      return;
    }
    refused.push_back(Unit{std::move(work), std::move(done)});
  }
  Refuse(refused);
}

void TimelineWriter::Flush() {
  absl::Notification handled;
  Submit([](Transaction&) { return absl::OkStatus(); },
         [&handled](const absl::Status&) { handled.Notify(); });
  handled.WaitForNotification();
}

int TimelineWriter::AddListener(Listener listener) {
  absl::MutexLock lock(&mu_);
  const int id = next_listener_++;
  listeners_[id] = std::move(listener);
  return id;
}

void TimelineWriter::RemoveListener(int id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

TimelineWriter::Stats TimelineWriter::stats() const {
  absl::MutexLock lock(&mu_);
  Stats out = stats_;
  out.queued = queue_.size();
  return out;
}

bool TimelineWriter::failing() const {
  absl::MutexLock lock(&mu_);
  return failing_;
}

void TimelineWriter::NoteFailure(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.failed_commits;
    ++stats_.failures_by_cause[FailureCause(status)];
    failing_ = true;
  }
  const absl::Time now = absl::Now();
  if (uint64_t suppressed = 0; failure_log_.Allow(now, &suppressed)) {
    spdlog::error(
        "cannot write to the database: {}; nothing was changed ({} similar failures "
        "not logged)",
        status.message(), suppressed);
  }
  // Give the store a chance to free space (a checkpoint truncates SQLite's WAL).
  if (now - last_maintain_ >= absl::Seconds(1)) {
    last_maintain_ = now;
    if (absl::Status s = store_->Maintain(); !s.ok()) {
      spdlog::debug("store maintenance failed: {}", s.message());
    }
  }
}

void TimelineWriter::SetHold(std::optional<absl::Status> reason) {
  absl::MutexLock lock(&mu_);
  hold_ = std::move(reason);
}

std::optional<absl::Status> TimelineWriter::hold() const {
  absl::MutexLock lock(&mu_);
  return hold_;
}

absl::Status TimelineWriter::CommitAndApply(Transaction& txn, size_t units) {
  txn.Seal();
  if (!txn.writes().empty()) {
    absl::MutexLock lock(&mu_);
    if (hold_.has_value()) return *hold_;
  }
  for (const Hooks& hooks : batch_hooks_) {
    if (hooks.before) hooks.before(txn.writes());
  }
  const bool wrote = !txn.writes().empty();
  const absl::Time start = absl::Now();
  // The writes go to the store (a failed commit is run again from its units, never from them).
  absl::StatusOr<std::vector<v1::TimelineEvent>> stored = store_->Commit(std::move(txn.writes()));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (const Hooks& hooks : batch_hooks_) {
    if (hooks.after) hooks.after(stored.ok());
  }
  if (!stored.ok()) {
    NoteFailure(stored.status());
    return stored.status();
  }
  txn.Committed();
  absl::MutexLock lock(&mu_);
  if (failing_) {
    failing_ = false;
    spdlog::info("writes to the database succeed again");
  }
  if (wrote) {
    ++stats_.commits;
    stats_.commit_seconds.Add(seconds);
  }
  stats_.units += units;
  stats_.events += stored->size();
  for (const v1::TimelineEvent& event : *stored) {
    for (const auto& [id, listener] : listeners_) {
      listener(event);
    }
  }
  return absl::OkStatus();
}

absl::Status TimelineWriter::RunNow(const Work& work) {
  Transaction txn(clock_->Now());
  if (absl::Status s = work(txn); !s.ok()) {
    txn.Rollback();
    return s;
  }
  absl::Status committed = CommitAndApply(txn, 1);
  if (!committed.ok()) {
    txn.Rollback();
  }
  return committed;
}

void TimelineWriter::Loop() {
  while (true) {
    std::deque<Unit> units;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](TimelineWriter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->queue_.empty() || self->stopping_;
          },
          this));
      if (stopping_ && (queue_.empty() || PastDeadline())) {
        // Done, or out of time: what is still queued is refused, never run.
        stopped_ = true;
        units.swap(queue_);
      } else {
        while (!queue_.empty() && units.size() < options_.max_batch) {
          units.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
    }
    if (units.empty() || PastDeadline()) {
      Refuse(units);
      absl::MutexLock lock(&mu_);
      if (stopped_) {
        return;
      }
      continue;
    }
    // One transaction for the whole batch; each unit's own refusal takes back only its part.
    // Past the stop deadline the units not yet run are left out (and refused).
    Transaction txn(clock_->Now(), units.size());
    std::vector<absl::Status> results;
    results.reserve(units.size());
    for (Unit& unit : units) {
      if (PastDeadline()) {
        break;
      }
      const Transaction::Mark mark = txn.mark();
      absl::Status s = unit.work(txn);
      if (!s.ok()) {
        txn.RollbackTo(mark);
      }
      results.push_back(std::move(s));
    }
    std::deque<Unit> late;
    while (units.size() > results.size()) {
      late.push_front(std::move(units.back()));
      units.pop_back();
    }
    absl::Status committed = CommitAndApply(txn, units.size());
    if (committed.ok()) {
      for (size_t i = 0; i < units.size(); ++i) {
        if (units[i].done) {
          units[i].done(results[i]);
        }
      }
      Refuse(late);
      continue;
    }
    txn.Rollback();
    if (units.size() == 1) {
      if (units[0].done) {
        units[0].done(committed);
      }
      Refuse(late);
      continue;
    }
    // Alone, each unit commits or fails on its own (the store may refuse only one of them). A
    // store that refuses every one of several in a row refuses them all: the rest get its error
    // untried, having changed nothing.
    int failures_in_a_row = 0;
    for (Unit& unit : units) {
      absl::Status s = committed;
      if (PastDeadline()) {
        s = Refusal();
      } else if (failures_in_a_row < options_.max_failed_retries) {
        Transaction alone(clock_->Now());
        s = unit.work(alone);
        if (!s.ok()) {
          alone.Rollback();
        } else if (s = CommitAndApply(alone, 1); !s.ok()) {
          alone.Rollback();
          committed = s;
          ++failures_in_a_row;
        } else {
          failures_in_a_row = 0;
        }
      }
      if (unit.done) {
        unit.done(s);
      }
    }
    Refuse(late);
  }
}

}  // namespace vigil::controller
