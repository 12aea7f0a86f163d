// Telemetry that the controller has not acknowledged yet, kept in memory so that a reconnect
// loses and doubles nothing: entries are numbered with the agent's sequence, resent on every
// new stream until an Ack covers them, and dropped oldest-first beyond a bound.
// Not thread-safe: owned by the stream client's sending thread.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "agent/collector.h"

namespace vigil::agent {

class TelemetrySpool {
 public:
  struct Entry {
    uint64_t sequence = 0;  // 0 until the first Welcome of this process numbers it
    std::vector<Collection> collections;
  };

  explicit TelemetrySpool(size_t max_entries) : max_entries_(max_entries) {}

  // Queues what the collectors produced since the last call as one entry; returns it.
  const Entry& Add(std::vector<Collection> collections);

  // A stream was welcomed: the controller holds everything up to `controller_last_sequence`.
  // The first Welcome of this process numbers the entries queued before it, after that number;
  // later ones drop what the controller already holds.
  void StartStream(uint64_t controller_last_sequence);

  // The controller stored every entry up to `sequence`.
  void AckThrough(uint64_t sequence);

  // The controller refused the entry `sequence` as invalid: it is dropped and counted, never
  // resent. False when no such entry is queued.
  bool Refuse(uint64_t sequence);

  const std::deque<Entry>& entries() const { return entries_; }
  bool numbered() const { return numbered_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t refused() const { return refused_; }
  uint64_t next_sequence() const { return next_sequence_; }

 private:
  const size_t max_entries_;
  std::deque<Entry> entries_;
  bool numbered_ = false;
  uint64_t next_sequence_ = 1;
  uint64_t dropped_ = 0;  // entries lost to the bound while the controller was away
  uint64_t refused_ = 0;  // entries the controller refused
};

}  // namespace vigil::agent
