#include "agent/telemetry_spool.h"

#include <algorithm>

namespace vigil::agent {

const TelemetrySpool::Entry& TelemetrySpool::Add(std::vector<Collection> collections) {
  if (entries_.size() >= max_entries_) {
    entries_.pop_front();
    ++dropped_;
  }
  Entry& entry = entries_.emplace_back();
  entry.collections = std::move(collections);
  if (numbered_) {
    entry.sequence = next_sequence_++;
  }
  return entry;
}

void TelemetrySpool::StartStream(uint64_t controller_last_sequence) {
  if (!numbered_) {
    // This process has not been welcomed before: continue after what the controller holds from
    // any earlier incarnation of this agent.
    next_sequence_ = std::max(next_sequence_, controller_last_sequence + 1);
    for (Entry& entry : entries_) {
      entry.sequence = next_sequence_++;
    }
    numbered_ = true;
    return;
  }
  AckThrough(controller_last_sequence);
  next_sequence_ = std::max(next_sequence_, controller_last_sequence + 1);
}

void TelemetrySpool::AckThrough(uint64_t sequence) {
  while (!entries_.empty() && entries_.front().sequence != 0 &&
         entries_.front().sequence <= sequence) {
    entries_.pop_front();
  }
}

bool TelemetrySpool::Refuse(uint64_t sequence) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->sequence == sequence && sequence != 0) {
      entries_.erase(it);
      ++refused_;
      return true;
    }
  }
  return false;
}

}  // namespace vigil::agent
