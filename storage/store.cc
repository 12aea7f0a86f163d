#include "storage/store.h"

#include <algorithm>
#include <optional>

#include "common/audit/chain_verifier.h"

namespace vigil::storage {

size_t WriteBatch::events() const {
  size_t n = 0;
  for (const Op& op : ops_) {
    n += std::holds_alternative<AppendEvent>(op) ? 1 : 0;
  }
  return n;
}

void WriteBatch::AttachIncident(size_t index, v1::Incident incident) {
  if (index < ops_.size()) {
    if (auto* append = std::get_if<AppendEvent>(&ops_[index])) {
      append->incident = std::move(incident);
    }
  }
}

void WriteBatch::InsertSave(size_t index, v1::Incident incident) {
  ops_.insert(ops_.begin() + static_cast<ptrdiff_t>(std::min(index, ops_.size())),
              SaveIncident{std::move(incident)});
}

absl::Status Store::SaveIncident(const v1::Incident& incident) {
  WriteBatch batch;
  batch.Save(incident);
  return Commit(std::move(batch)).status();
}

absl::Status Store::SaveAlert(const v1::Alert& alert) {
  WriteBatch batch;
  batch.Save(alert);
  return Commit(std::move(batch)).status();
}

absl::Status Store::SaveProposal(const v1::ActionProposal& proposal) {
  WriteBatch batch;
  batch.Save(proposal);
  return Commit(std::move(batch)).status();
}

absl::StatusOr<v1::TimelineEvent> Store::AppendEvent(v1::TimelineEvent event,
                                                     const v1::Incident* incident) {
  WriteBatch batch;
  batch.Append(std::move(event), incident);
  absl::StatusOr<std::vector<v1::TimelineEvent>> stored = Commit(std::move(batch));
  if (!stored.ok()) {
    return stored.status();
  }
  return std::move(stored->front());
}

absl::StatusOr<std::vector<v1::TimelineEvent>> Store::ListIncidentEventsOfKind(
    absl::string_view incident_id, absl::string_view kind, int limit) {
  std::vector<v1::TimelineEvent> matching;
  uint64_t after = 0;
  constexpr int kPage = 1000;
  while (true) {
    absl::StatusOr<std::vector<v1::TimelineEvent>> page = ListEvents(incident_id, after, kPage);
    if (!page.ok()) {
      return page.status();
    }
    for (v1::TimelineEvent& event : *page) {
      after = event.seq();
      if (event.kind() == kind) {
        matching.push_back(std::move(event));
      }
    }
    if (page->size() < static_cast<size_t>(kPage)) {
      break;
    }
  }
  std::reverse(matching.begin(), matching.end());
  if (limit > 0 && matching.size() > static_cast<size_t>(limit)) {
    matching.resize(limit);
  }
  return matching;
}

absl::StatusOr<v1::VerifyAuditResponse> Store::VerifyChain() {
  ChainSnapshot snapshot;
  std::optional<audit::ChainVerifier> verifier;
  auto start = [&] {
    if (!verifier.has_value()) {
      audit::ChainVerifier::Options options;
      options.format2_from_seq = snapshot.format2_from_seq;
      verifier.emplace(std::move(options));
    }
  };
  absl::Status read = ReadChain(0, 0, &snapshot, [&](const v1::TimelineEvent& event) {
    start();
    return verifier->Add(event);
  });
  if (!read.ok()) return read;
  start();
  return verifier->Finish(snapshot.recorded_head);
}

}  // namespace vigil::storage
