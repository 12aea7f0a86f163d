#include "controller/timeline/transaction.h"

namespace vigil::controller {

void Transaction::Append(std::string incident_id, absl::string_view kind, absl::string_view actor,
                         std::string summary, std::string details_json,
                         const v1::Incident* incident) {
  v1::TimelineEvent event;
  event.set_incident_id(std::move(incident_id));
  event.set_time_unix_ms(absl::ToUnixMillis(now_));
  event.set_kind(std::string(kind));
  event.set_actor(std::string(actor));
  event.set_summary(std::move(summary));
  event.set_details_json(std::move(details_json));
  writes_.Append(std::move(event), incident);
}

void Transaction::RollbackTo(const Mark& mark) {
  while (undo_.size() > mark.undo) {
    std::function<void()> undo = std::move(undo_.back());
    undo_.pop_back();
    undo();
  }
  writes_.Truncate(mark.writes);
  effects_.resize(std::min(mark.effects, effects_.size()));
}

void Transaction::Committed() {
  undo_.clear();
  for (std::function<void()>& effect : effects_) {
    effect();
  }
  effects_.clear();
}

}  // namespace vigil::controller
