#include "controller/timeline/transaction.h"

#include "absl/container/flat_hash_map.h"

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

void Transaction::AppendLive(absl::string_view kind, absl::string_view actor, std::string summary,
                             std::string details_json, const v1::Incident* incident) {
  live_.push_back(Live{writes_.size(), incident, false});
  Append(incident->id(), kind, actor, std::move(summary), std::move(details_json), nullptr);
}

void Transaction::SaveLive(const v1::Incident* incident) {
  live_.push_back(Live{writes_.size(), incident, true});
}

void Transaction::Seal() {
  // Per incident: its last event in the batch, else its last save.
  absl::flat_hash_map<const v1::Incident*, const Live*> target;
  for (const Live& live : live_) {
    auto [it, inserted] = target.try_emplace(live.incident, &live);
    if (!inserted && (!live.save || it->second->save)) {
      it->second = &live;
    }
  }
  std::vector<const Live*> order;
  order.reserve(target.size());
  for (const auto& [incident, live] : target) {
    order.push_back(live);
  }
  // Inserting from the back leaves the indexes of the ops in front where they were.
  std::sort(order.begin(), order.end(),
            [](const Live* a, const Live* b) { return a->index > b->index; });
  for (const Live* live : order) {
    if (live->save) {
      writes_.InsertSave(live->index, *live->incident);
    } else {
      writes_.AttachIncident(live->index, *live->incident);
    }
  }
  live_.clear();
}

void Transaction::RollbackTo(const Mark& mark) {
  while (undo_.size() > mark.undo) {
    std::function<void()> undo = std::move(undo_.back());
    undo_.pop_back();
    undo();
  }
  writes_.Truncate(mark.writes);
  live_.resize(std::min(mark.live, live_.size()));
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
