#include "tests/chaos/telemetry_check.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace vigil::chaos {

void TelemetryVerdict::ReportTo(const std::string& scenario) const {
  Report(scenario + ".batches_sent", sent);
  Report(scenario + ".batches_stored", stored);
  Report(scenario + ".batches_lost_recorded", lost_recorded);
  Report(scenario + ".batches_lost_unrecorded", lost_unrecorded);
  Report(scenario + ".violations", violations.size());
}

TelemetryWatch::TelemetryWatch(const ChaosController& controller, std::string token,
                               const std::vector<AgentSlot>& agents)
    : controller_(controller), token_(std::move(token)) {
  for (const AgentSlot& a : agents) {
    ids_.push_back(a.id);
  }
}

bool TelemetryWatch::WaitStreaming(absl::Duration timeout, uint64_t advance) {
  std::map<std::string, uint64_t> start;
  const bool ok = testing::WaitUntil(
      [&] {
        auto agents = ListAgents(controller_, token_);
        if (!agents) {
          last_error_ = "the controller does not answer `vigil agents`";
          return false;
        }
        for (const std::string& id : ids_) {
          auto it = agents->find(id);
          if (it == agents->end()) {
            last_error_ = absl::StrCat("agent ", id, " is not listed");
            return false;
          }
          if (start.count(id) == 0) {
            start[id] = it->second.last_sequence();
          }
          if (it->second.state() != v1::CONNECTED ||
              it->second.last_sequence() < start[id] + advance) {
            last_error_ = absl::StrCat("agent ", id, " is ", v1::AgentState_Name(it->second.state()),
                                       " at sequence ", it->second.last_sequence(), " (from ",
                                       start[id], ", want +", advance, ")");
            return false;
          }
        }
        return true;
      },
      timeout, absl::Milliseconds(100));
  Observe();
  return ok;
}

bool TelemetryWatch::Calibrate(absl::Duration window) {
  auto before = ListAgents(controller_, token_);
  const absl::Time t0 = absl::Now();
  absl::SleepFor(window);
  auto after = ListAgents(controller_, token_);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  if (!before || !after) {
    last_error_ = "the controller does not answer `vigil agents`";
    return false;
  }
  rate_ = -1;
  for (const std::string& id : ids_) {
    const double r =
        ((*after)[id].last_sequence() - static_cast<double>((*before)[id].last_sequence())) /
        seconds;
    rate_ = rate_ < 0 ? r : std::min(rate_, r);
  }
  printf("chaos: agents collect %.2f batches/s each\n", rate_);
  if (rate_ <= 0) {
    last_error_ = "the agents' sequences did not grow";
    return false;
  }
  return true;
}

void TelemetryWatch::Observe() {
  auto agents = ListAgents(controller_, token_);
  if (!agents) {
    return;
  }
  for (const std::string& id : ids_) {
    auto it = agents->find(id);
    if (it == agents->end()) {
      if (seen_sequence_[id] > 0) {
        regressions_.push_back(absl::StrCat("agent ", id, " at sequence ", seen_sequence_[id],
                                            " is no longer known to the controller"));
      }
      continue;
    }
    const uint64_t seq = it->second.last_sequence();
    const uint64_t lost = it->second.lost_batches();
    const uint64_t before = seen_sequence_[id];
    const uint64_t lost_since = lost >= seen_lost_[id] ? lost - seen_lost_[id] : 0;
    if (seq < before && before - seq > lost_since) {
      regressions_.push_back(absl::StrCat(
          "agent ", id, ": the controller had reported last_sequence ", before, ", then ", seq,
          " after a fault, with lost_batches +", lost_since,
          ": acknowledged batches forgotten without a recorded gap"));
    }
    // A regression is reported once: the controller's new view is the base from here on.
    seen_sequence_[id] = seq;
    seen_lost_[id] = lost;
  }
}

TelemetryVerdict TelemetryWatch::StopAndCheck(std::vector<AgentSlot>& agents) {
  TelemetryVerdict verdict;
  verdict.violations = regressions_;
  std::map<std::string, TelemetryTotals> totals;
  std::map<std::string, uint64_t> collected_floor;
  for (AgentSlot& slot : agents) {
    const absl::Duration lifetime = absl::Now() - slot.started;
    const int code = slot.process ? slot.process->Stop(absl::Seconds(10)) : -1;
    // A floor for what each incarnation collected: the measured rate, less 8 % for a slower
    // moment and two batches for start-up, over its lifetime. (A looser floor hides the loss
    // it is here to find: 3 s of spooled batches is 15 at 200 ms.)
    auto floor_of = [&](absl::Duration d) -> uint64_t {
      const double n = std::floor(rate_ * 0.92 * absl::ToDoubleSeconds(d)) - 2;
      return n > 0 ? static_cast<uint64_t>(n) : 0;
    };
    uint64_t floor = 0;
    for (absl::Duration d : slot.killed) {
      floor += floor_of(d);
    }
    const std::string log = slot.process ? slot.process->Output() : "";
    std::optional<TelemetryTotals> t = ParseTelemetryTotals(log);
    if (t) {
      totals[slot.id] = *t;
      // Rounds replayed from the spool were collected by an earlier incarnation, whose own
      // floor counts them already.
      floor += t->collected - std::min(t->replayed, t->collected);
      verdict.sent += t->sent;
    } else {
      floor += floor_of(lifetime);
      verdict.violations.push_back(absl::StrCat(
          "agent ", slot.id, " (exit ", code, ", log ", slot.process ? slot.process->log_path() : "",
          ") logged no 'telemetry totals: collected=N sent=N acknowledged_through=SEQ dropped=N "
          "refused=N spooled=N' line on SIGTERM; its last incarnation's count is estimated"));
    }
    collected_floor[slot.id] = floor;
  }
  std::optional<std::map<std::string, v1::AgentInfo>> final_view;
  testing::WaitUntil(
      [&] {
        final_view = ListAgents(controller_, token_);
        return final_view.has_value();
      },
      absl::Seconds(10));
  if (!final_view) {
    verdict.violations.push_back("the controller does not answer `vigil agents` at the end");
    return verdict;
  }
  for (const AgentSlot& slot : agents) {
    const v1::AgentInfo& info = (*final_view)[slot.id];
    const uint64_t stored = info.last_sequence();
    const uint64_t lost = info.lost_batches();
    verdict.stored += stored;
    verdict.lost_recorded += lost;
    const uint64_t spooled = totals.count(slot.id) ? totals[slot.id].spooled : 0;
    if (totals.count(slot.id) && totals[slot.id].acknowledged_through > stored) {
      verdict.violations.push_back(absl::StrCat(
          "agent ", slot.id, ": acknowledged through sequence ",
          totals[slot.id].acknowledged_through, " but the controller holds through ", stored,
          ": acknowledged batches lost"));
    }
    const uint64_t accounted = stored + spooled + lost;
    printf("chaos: agent %s: %d incarnation(s), collected >= %llu, controller holds through %llu, "
           "lost_batches %llu, still spooled %llu\n",
           slot.id.c_str(), slot.incarnations,
           static_cast<unsigned long long>(collected_floor[slot.id]),
           static_cast<unsigned long long>(stored), static_cast<unsigned long long>(lost),
           static_cast<unsigned long long>(spooled));
    if (collected_floor[slot.id] > accounted) {
      const uint64_t missing = collected_floor[slot.id] - accounted;
      verdict.lost_unrecorded += missing;
      verdict.violations.push_back(absl::StrCat(
          "agent ", slot.id, ": collected at least ", collected_floor[slot.id], " batches over ",
          slot.incarnations, " incarnation(s) (", slot.killed.size(),
          " SIGKILLed), but the controller holds through sequence ", stored, " with lost_batches ",
          lost, " and ", spooled, " still spooled: at least ", missing,
          " batches vanished without a recorded gap"));
    }
  }
  return verdict;
}

}  // namespace vigil::chaos
