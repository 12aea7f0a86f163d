// A unit of work's view of the group commit it runs in: the store writes it wants, how to take
// its in-memory changes back if the commit fails, and the effects (messages to agents, log lines,
// published state) that may happen only once the commit succeeded.
//
// Code that changes controller state on the writer thread follows one rule: first Preserve what
// it is about to change, then change it, then add the writes; anything that leaves the process
// goes in AfterCommit. A failed commit then leaves memory exactly as the store is.
// Not thread-safe: it lives on the writer thread.
#pragma once

#include <algorithm>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/store.h"
#include "vigil/v1/incident.pb.h"

namespace vigil::controller {

class Transaction {
 public:
  // How far a unit of work got; RollbackTo takes back everything after it.
  struct Mark {
    size_t writes = 0;
    size_t undo = 0;
    size_t effects = 0;
    size_t live = 0;
  };

  explicit Transaction(absl::Time now) : now_(now) {}
  // For a batch of about `units` units of work: room for their writes and logs up front, so a
  // batch of thousands does not grow its vectors a dozen times over.
  Transaction(absl::Time now, size_t units) : now_(now) {
    writes_.Reserve(3 * units);
    undo_.reserve(8 * units);
    effects_.reserve(4 * units);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  storage::WriteBatch& writes() { return writes_; }
  // The writer's clock when the batch started: event times in one batch agree.
  absl::Time now() const { return now_; }

  // Appends an event to the timeline (and saves a copy of `incident` as it is now, when given).
  void Append(std::string incident_id, absl::string_view kind, absl::string_view actor,
              std::string summary, std::string details_json, const v1::Incident* incident);
  // Appends an event and saves `incident` as it is when the batch is sealed, just before the
  // commit: an incident that gets a thousand events in a batch is copied and written once, not a
  // thousand times. `incident` must stay at its address until the batch commits or rolls back.
  void AppendLive(absl::string_view kind, absl::string_view actor, std::string summary,
                  std::string details_json, const v1::Incident* incident);
  // Saves `incident` as it is when the batch is sealed (same terms as AppendLive).
  void SaveLive(const v1::Incident* incident);
  // Called by the writer just before the commit: writes each live incident once, with the last
  // of its events in the batch (or where it was last saved, when it got no event). After Seal
  // only Rollback() may follow.
  void Seal();

  // Registers `undo`, run (newest first) if this batch does not commit.
  void OnRollback(std::function<void()> undo) { undo_.push_back(std::move(undo)); }
  // Runs after the commit succeeded, in the order added.
  void AfterCommit(std::function<void()> effect) { effects_.push_back(std::move(effect)); }

  // Remembers `value` as it is now and puts it back on rollback.
  template <typename T>
  void Preserve(T& value) {
    OnRollback([&value, saved = value]() mutable { value = std::move(saved); });
  }
  // Remembers map[key] (or its absence) and restores it on rollback.
  template <typename Map>
  void PreserveKey(Map& map, const typename Map::key_type& key) {
    auto it = map.find(key);
    std::optional<typename Map::mapped_type> saved;
    if (it != map.end()) {
      saved = it->second;
    }
    OnRollback([&map, key, saved = std::move(saved)]() mutable {
      if (saved.has_value()) {
        map.insert_or_assign(key, std::move(*saved));
      } else {
        map.erase(key);
      }
    });
  }

  Mark mark() const { return Mark{writes_.size(), undo_.size(), effects_.size(), live_.size()}; }
  // Takes back what happened after `mark`: undoes in-memory changes, drops writes and effects.
  void RollbackTo(const Mark& mark);
  void Rollback() { RollbackTo(Mark{}); }
  // After a successful commit: runs the effects and forgets the undo log.
  void Committed();

 private:
  // A live incident and where it goes in writes_: the AppendEvent op at `index`, or (save) a
  // save inserted before the op at `index`.
  struct Live {
    size_t index;
    const v1::Incident* incident;
    bool save;
  };

  const absl::Time now_;
  storage::WriteBatch writes_;
  std::vector<Live> live_;
  std::vector<std::function<void()>> undo_;
  std::vector<std::function<void()>> effects_;
};

}  // namespace vigil::controller
