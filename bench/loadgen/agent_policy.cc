#include "bench/loadgen/agent_policy.h"

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "bench/loadgen/reconnect_backoff.h"
#include "common/heartbeat.h"

namespace vigil::loadgen {

void PrintFailure(const std::string& what) {
  static std::atomic<int> printed{0};
  if (printed.fetch_add(1) < 5) {
    std::fprintf(stderr, "loadgen: %s\n", what.c_str());
  }
}

StreamPace Welcomed(const FleetOptions& options, const v1::Welcome& welcome, absl::Time now,
                    absl::Duration silence_timeout, uint64_t* next_sequence) {
  *next_sequence = std::max(*next_sequence, welcome.last_sequence() + 1);
  StreamPace pace;
  pace.heartbeat = HeartbeatPeriod(options.heartbeat, welcome.heartbeat_timeout_ms());
  pace.silence_timeout = welcome.heartbeat_timeout_ms() > 0
                             ? absl::Milliseconds(welcome.heartbeat_timeout_ms())
                             : silence_timeout;
  const int64_t step = absl::ToInt64Milliseconds(options.interval);
  pace.next_round = absl::FromUnixMillis((absl::ToUnixMillis(now) / step + 1) * step);
  return pace;
}

void CountWelcome(bool* ever_welcomed, FleetCounters& c) {
  c.streaming.fetch_add(1);
  c.welcomes.fetch_add(1, std::memory_order_relaxed);
  if (!*ever_welcomed) {
    *ever_welcomed = true;
    c.ever_welcomed.fetch_add(1);
  }
}

void Acknowledged(uint64_t through, uint64_t samples_per_batch, std::deque<uint64_t>* in_flight,
                  FleetCounters& counters) {
  while (!in_flight->empty() && in_flight->front() <= through) {
    in_flight->pop_front();
    counters.batches_acked.fetch_add(1, std::memory_order_relaxed);
    counters.samples_acked.fetch_add(samples_per_batch, std::memory_order_relaxed);
  }
}

std::optional<absl::Duration> CountStreamEnd(const StreamEnd& end, const FleetOptions& options,
                                             absl::string_view agent_id, uint32_t* dropped_in_phase,
                                             FleetCounters& c) {
  if (end.was_streaming) {
    c.drops.fetch_add(1, std::memory_order_relaxed);
    switch (end.code) {
      case kCancelled:
        c.drops_cancelled.fetch_add(1, std::memory_order_relaxed);
        if (end.silent_ourselves) {
          c.drops_cancelled_own_gap.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      case kUnavailable:
        c.drops_unavailable.fetch_add(1, std::memory_order_relaxed);
        break;
      default:
        c.drops_other.fetch_add(1, std::memory_order_relaxed);
        PrintFailure(absl::StrCat(agent_id, " dropped: code ", end.code, ": ", end.message));
    }
    const uint32_t phase = options.phase != nullptr ? options.phase->load() : 0;
    if (*dropped_in_phase != phase + 1) {
      *dropped_in_phase = phase + 1;
      c.drop_agents.fetch_add(1, std::memory_order_relaxed);
    }
    return std::nullopt;
  }
  if (end.cancelled_for_welcome) {
    c.welcome_timeouts.fetch_add(1, std::memory_order_relaxed);
  } else if (end.code == kResourceExhausted) {
    c.refused_exhausted.fetch_add(1, std::memory_order_relaxed);
    if (end.retry_after != nullptr) {
      if (std::optional<absl::Duration> hint = ParseRetryAfterMs(*end.retry_after)) {
        c.retry_hints.fetch_add(1, std::memory_order_relaxed);
        c.retry_hint_ms_total.fetch_add(absl::ToInt64Milliseconds(*hint),
                                        std::memory_order_relaxed);
        return hint;
      }
    }
  } else if (end.code == kUnavailable) {
    c.failed_unavailable.fetch_add(1, std::memory_order_relaxed);
  } else if (end.code == kCancelled) {
    c.failed_cancelled.fetch_add(1, std::memory_order_relaxed);
  } else {
    c.failed_other.fetch_add(1, std::memory_order_relaxed);
    PrintFailure(absl::StrCat(agent_id, " refused: code ", end.code, ": ", end.message));
  }
  return std::nullopt;
}

std::string DescribeNotStreaming(const std::vector<AgentCensus>& agents, absl::Time now) {
  struct Tally {
    AgentState state;
    bool attempted;
    const char* name;
    int count = 0;
    absl::Duration longest = absl::ZeroDuration();
  };
  Tally tallies[] = {{AgentState::kWaiting, true, "waiting to retry"},
                     {AgentState::kWaiting, false, "not tried yet"},
                     {AgentState::kWatching, true, "waiting for its connection"},
                     {AgentState::kConnecting, true, "connecting"}};
  absl::Duration furthest_retry;  // the latest next attempt of those waiting to retry
  for (const AgentCensus& s : agents) {
    for (Tally& t : tallies) {
      if (t.state == s.state && (t.attempted == s.attempted || s.state != AgentState::kWaiting)) {
        ++t.count;
        t.longest = std::max(t.longest, now - s.since);
      }
    }
    if (s.state == AgentState::kWaiting && s.attempted) {
      furthest_retry = std::max(furthest_retry, s.next - now);
    }
  }
  std::string out;
  for (const Tally& t : tallies) {
    if (t.count > 0) {
      absl::StrAppend(&out, out.empty() ? "" : ", ", t.count, " ", t.name, " (longest ",
                      absl::FormatDuration(absl::Trunc(t.longest, absl::Milliseconds(100))), ")");
    }
  }
  if (tallies[0].count > 0) {
    absl::StrAppend(&out, "; furthest retry due in ",
                    absl::FormatDuration(absl::Trunc(furthest_retry, absl::Milliseconds(100))));
  }
  return out.empty() ? "every agent streaming" : out;
}

}  // namespace vigil::loadgen
