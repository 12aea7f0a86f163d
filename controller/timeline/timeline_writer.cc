#include "controller/timeline/timeline_writer.h"

#include <spdlog/spdlog.h>

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
  if (started_) {
    return;
  }
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void TimelineWriter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

void TimelineWriter::Submit(Work work, Done done) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(Unit{std::move(work), std::move(done)});
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
    spdlog::error("cannot write to the database: {}; nothing was changed ({} similar failures "
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

absl::Status TimelineWriter::CommitAndApply(Transaction& txn, size_t units) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<v1::TimelineEvent>> stored = store_->Commit(txn.writes());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
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
  if (!txn.writes().empty()) {
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
    std::vector<Unit> units;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](TimelineWriter* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return !self->queue_.empty() || self->stopping_;
          },
          this));
      if (queue_.empty()) {
        return;  // stopping, and everything queued is done
      }
      while (!queue_.empty() && units.size() < options_.max_batch) {
        units.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // One transaction for the whole batch; each unit's own refusal takes back only its part.
    Transaction txn(clock_->Now());
    std::vector<absl::Status> results;
    results.reserve(units.size());
    for (Unit& unit : units) {
      const Transaction::Mark mark = txn.mark();
      absl::Status s = unit.work(txn);
      if (!s.ok()) {
        txn.RollbackTo(mark);
      }
      results.push_back(std::move(s));
    }
    absl::Status committed = CommitAndApply(txn, units.size());
    if (committed.ok()) {
      for (size_t i = 0; i < units.size(); ++i) {
        if (units[i].done) {
          units[i].done(results[i]);
        }
      }
      continue;
    }
    txn.Rollback();
    if (units.size() == 1) {
      if (units[0].done) {
        units[0].done(committed);
      }
      continue;
    }
    // Alone, each unit commits or fails on its own (the store may refuse only one of them).
    for (Unit& unit : units) {
      absl::Status s = RunNow(unit.work);
      if (unit.done) {
        unit.done(s);
      }
    }
  }
}

}  // namespace vigil::controller
