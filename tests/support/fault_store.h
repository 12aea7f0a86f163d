// A Store that forwards to a real one and fails writes on command: the fault injection of unit
// tests (a full disk, a database gone away). Reads pass through, whole-chain reads (ReadChain)
// held back on command (a slow read). Thread-safe.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "storage/store.h"

namespace vigil::testing {

class FaultInjectingStore final : public storage::Store {
 public:
  explicit FaultInjectingStore(storage::Store* real) : real_(real) {}

  // Every Commit fails with `error` until Heal().
  void FailWrites(
      absl::Status error = absl::ResourceExhaustedError("database or disk is full (injected)")) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
    fail_after_ = 0;
    fail_count_ = 0;
  }
  // The next `n` commits succeed, then every one fails with `error`.
  void FailAfter(int n, absl::Status error =
                            absl::ResourceExhaustedError("database or disk is full (injected)")) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
    fail_after_ = n;
    fail_count_ = 0;
  }
  // The next `n` commits fail with `error`, then writes work again.
  void FailNext(int n,
                absl::Status error = absl::UnavailableError("database is locked (injected)")) {
    absl::MutexLock lock(&mu_);
    error_ = std::move(error);
    fail_after_ = 0;
    fail_count_ = n;
  }
  void Heal() {
    absl::MutexLock lock(&mu_);
    error_.reset();
  }
  // Every ReadChain (the audit check's read) from now on waits for `release` before reading
  // (nullptr: none waits): a whole-chain read as slow as the test wants. `release` must outlive
  // the waiting calls.
  void HoldVerifyChain(absl::Notification* release) { verify_release_.store(release); }
  // ReadChain calls waiting for their release now.
  int verify_waiting() const { return verify_waiting_.load(); }
  // The name of the thread the last held ReadChain ran on.
  std::string verify_thread() const {
    absl::MutexLock lock(&mu_);
    return verify_thread_;
  }
  // The next `n` MarkNotificationDelivered calls fail (a crash between a receiver's 2xx and the
  // mark, as far as the outbox can tell).
  void FailNotificationMarks(int n) { fail_marks_.store(n); }
  uint64_t commits() const { return commits_.load(); }
  uint64_t failed_commits() const { return failed_.load(); }
  uint64_t maintenance_calls() const { return maintain_.load(); }

  absl::StatusOr<std::vector<v1::TimelineEvent>> Commit(storage::WriteBatch batch) override {
    {
      absl::MutexLock lock(&mu_);
      if (error_.has_value()) {
        if (fail_after_ > 0) {
          --fail_after_;
        } else {
          ++failed_;
          absl::Status error = *error_;
          if (fail_count_ > 0 && --fail_count_ == 0) {
            error_.reset();
          }
          return error;
        }
      }
    }
    ++commits_;
    return real_->Commit(std::move(batch));
  }
  absl::Status Maintain() override {
    ++maintain_;
    return real_->Maintain();
  }
  absl::Status CheckIntegrity() override { return real_->CheckIntegrity(); }
  storage::StoreLogHealth LogHealth() override { return real_->LogHealth(); }

  absl::Status UpsertAgents(const std::vector<v1::AgentInfo>& agents) override {
    return real_->UpsertAgents(agents);
  }
  absl::StatusOr<std::vector<v1::AgentInfo>> ListAgents() override { return real_->ListAgents(); }
  absl::StatusOr<std::optional<v1::Incident>> GetIncident(absl::string_view id) override {
    return real_->GetIncident(id);
  }
  absl::StatusOr<std::vector<v1::Incident>> ListIncidents(absl::string_view state) override {
    return real_->ListIncidents(state);
  }
  absl::StatusOr<std::vector<v1::Alert>> ListAlerts(bool include_resolved) override {
    return real_->ListAlerts(include_resolved);
  }
  absl::StatusOr<std::vector<v1::Alert>> ListIncidentAlerts(
      absl::string_view incident_id) override {
    return real_->ListIncidentAlerts(incident_id);
  }
  absl::StatusOr<std::vector<v1::TimelineEvent>> ListEvents(absl::string_view incident_id,
                                                            uint64_t after_seq,
                                                            int limit) override {
    return real_->ListEvents(incident_id, after_seq, limit);
  }
  absl::Status ReadChain(uint64_t after_seq, uint64_t up_to_seq, storage::ChainSnapshot* snapshot,
                         const std::function<bool(const v1::TimelineEvent&)>& visit) override {
    absl::Notification* release = verify_release_.load();
    if (release != nullptr) {
      char name[16] = {};
      pthread_getname_np(pthread_self(), name, sizeof(name));
      {
        absl::MutexLock lock(&mu_);
        verify_thread_ = name;
      }
      ++verify_waiting_;
      release->WaitForNotification();
      --verify_waiting_;
    }
    return real_->ReadChain(after_seq, up_to_seq, snapshot, visit);
  }
  absl::StatusOr<std::pair<uint64_t, std::string>> ChainHead() override {
    return real_->ChainHead();
  }
  absl::Status AddCheckpoint(const v1::AuditCheckpoint& checkpoint) override {
    {
      // Fails while commits fail (not counted among them, nor counting down their budget).
      absl::MutexLock lock(&mu_);
      if (error_.has_value() && fail_after_ == 0) return *error_;
    }
    return real_->AddCheckpoint(checkpoint);
  }
  absl::StatusOr<std::vector<v1::Notification>> PendingNotifications(absl::string_view receiver,
                                                                     int limit) override {
    return real_->PendingNotifications(receiver, limit);
  }
  absl::StatusOr<std::map<std::string, int64_t>> CountPendingNotifications() override {
    return real_->CountPendingNotifications();
  }
  absl::Status MarkNotificationDelivered(uint64_t id, int64_t unix_ms) override {
    if (fail_marks_.load() > 0) {
      fail_marks_.fetch_sub(1);
      return absl::UnavailableError("database is locked (injected)");
    }
    return real_->MarkNotificationDelivered(id, unix_ms);
  }
  absl::Status RecordNotificationFailure(uint64_t id, absl::string_view error) override {
    return real_->RecordNotificationFailure(id, error);
  }
  absl::Status AddUser(const storage::UserRecord& user) override { return real_->AddUser(user); }
  absl::StatusOr<std::optional<storage::UserRecord>> FindUserByTokenHash(
      absl::string_view token_hash) override {
    return real_->FindUserByTokenHash(token_hash);
  }
  absl::StatusOr<std::optional<storage::UserRecord>> FindUserByName(
      absl::string_view name) override {
    return real_->FindUserByName(name);
  }
  absl::StatusOr<std::vector<storage::UserRecord>> ListUsers() override {
    return real_->ListUsers();
  }
  absl::Status SetUserDisabled(absl::string_view name, int64_t disabled_unix_ms) override {
    return real_->SetUserDisabled(name, disabled_unix_ms);
  }
  absl::Status ReplaceUserToken(absl::string_view name, absl::string_view token_hash,
                                int64_t expires_unix_ms, int64_t rotated_unix_ms) override {
    return real_->ReplaceUserToken(name, token_hash, expires_unix_ms, rotated_unix_ms);
  }
  absl::StatusOr<int64_t> UsersVersion() override { return real_->UsersVersion(); }
  absl::StatusOr<std::optional<v1::ActionProposal>> GetProposal(absl::string_view id) override {
    return real_->GetProposal(id);
  }
  absl::StatusOr<std::vector<v1::ActionProposal>> ListProposals(
      absl::string_view incident_id) override {
    return real_->ListProposals(incident_id);
  }

 private:
  storage::Store* const real_;
  mutable absl::Mutex mu_;
  std::optional<absl::Status> error_ ABSL_GUARDED_BY(mu_);
  std::string verify_thread_ ABSL_GUARDED_BY(mu_);
  int fail_after_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_count_ ABSL_GUARDED_BY(mu_) = 0;  // > 0: heal after this many failures
  std::atomic<uint64_t> commits_{0};
  std::atomic<int> fail_marks_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> maintain_{0};
  std::atomic<absl::Notification*> verify_release_{nullptr};
  std::atomic<int> verify_waiting_{0};
};

}  // namespace vigil::testing
