#include "controller/remediation/circuit_breaker.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace vigil::controller {
namespace {

std::string When(absl::Time t, absl::Time now) {
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()), " (in ",
                      absl::FormatDuration(absl::Ceil(t - now, absl::Seconds(1))), ")");
}

// The runs of `times` (oldest first) after `since` (the last re-arm).
std::vector<absl::Time> After(const std::deque<absl::Time>& times, absl::Time since) {
  std::vector<absl::Time> out;
  for (absl::Time t : times) {
    if (t > since) {
      out.push_back(t);
    }
  }
  return out;
}

struct Verdict {
  size_t in_window = 0;         // runs counted now
  bool cooling = false;         // the bound was reached by the last run, within the cool-down
  absl::Time opens = absl::InfinitePast();  // when `wanted` more may run; past: now
};

// Whether `wanted` more runs fit under `bound` runs per window, given the runs since the last
// re-arm (oldest first) and `extra` runs planned now. When the bound is reached, enough runs must
// leave the window; and when the last run reached it, nothing runs until its cool-down is over
// (so the verdict given at the bound holds to the time it names).
Verdict Judge(const std::vector<absl::Time>& runs, int extra, size_t wanted, int bound,
              const BreakerLimits& limits, absl::Time now) {
  Verdict v;
  std::vector<absl::Time> counted;
  for (absl::Time t : runs) {
    if (t > now - limits.window) {
      counted.push_back(t);
    }
  }
  v.in_window = counted.size();
  counted.insert(counted.end(), extra, now);  // planned runs leave the window last
  if (counted.size() + wanted > static_cast<size_t>(bound)) {
    if (wanted > static_cast<size_t>(bound)) {
      v.opens = absl::InfiniteFuture();
      return v;
    }
    v.opens = counted[counted.size() + wanted - bound - 1] + limits.window;
  }
  if (limits.cooldown > absl::ZeroDuration() && !runs.empty()) {
    const absl::Time last = runs.back();
    const auto at_last = std::count_if(runs.begin(), runs.end(), [&](absl::Time t) {
      return t > last - limits.window;
    });
    if (at_last >= bound && now < last + limits.cooldown) {
      v.cooling = true;
      v.opens = std::max(v.opens, last + limits.cooldown);
    }
  }
  if (v.opens <= now) {
    v.opens = absl::InfinitePast();
  }
  return v;
}

}  // namespace

void RunLedger::AddRun(const std::string& action, const std::string& agent, absl::Time time) {
  ActionRuns& runs = actions_[action];
  auto insert_sorted = [time](std::deque<absl::Time>& times) {
    times.insert(std::upper_bound(times.begin(), times.end(), time), time);
  };
  insert_sorted(runs.by_agent[agent]);
  insert_sorted(runs.fleet);
}

void RunLedger::RemoveRun(const std::string& action, const std::string& agent, absl::Time time) {
  auto it = actions_.find(action);
  if (it == actions_.end()) {
    return;
  }
  auto erase_one = [time](std::deque<absl::Time>& times) {
    auto at = std::find(times.begin(), times.end(), time);
    if (at == times.end()) {
      return false;
    }
    times.erase(at);
    return true;
  };
  // The fleet's copy goes only with the agent's, so a wrong agent takes back nothing.
  if (auto a = it->second.by_agent.find(agent);
      a != it->second.by_agent.end() && erase_one(a->second)) {
    erase_one(it->second.fleet);
  }
}

void RunLedger::Rearm(const std::string& action, const std::vector<std::string>& agents,
                      absl::Time time) {
  ActionRuns& runs = actions_[action];
  if (agents.empty()) {
    runs.rearmed_fleet = std::max(runs.rearmed_fleet, time);  // read by the per-host checks too
    return;
  }
  for (const std::string& agent : agents) {
    auto [it, inserted] = runs.rearmed_agent.emplace(agent, time);
    if (!inserted) {
      it->second = std::max(it->second, time);
    }
  }
}

absl::Status RunLedger::Check(const std::string& action, const std::vector<std::string>& agents,
                              const std::map<std::string, int>& planned,
                              const BreakerLimits& limits, absl::Time now) const {
  auto it = actions_.find(action);
  const ActionRuns* runs = it == actions_.end() ? nullptr : &it->second;
  auto rearm_hint = [&action](absl::string_view agent) {
    return absl::StrCat("; an admin may re-arm it: vigil action rearm INCIDENT --action ", action,
                        agent.empty() ? "" : absl::StrCat(" --agent ", agent), " --reason '...'");
  };
  auto approved = [](int extra) {
    return extra > 0 ? absl::StrCat(" with ", extra, " more approved") : std::string();
  };
  if (limits.per_host > 0) {
    for (const std::string& agent : agents) {
      std::vector<absl::Time> since_rearm;
      if (runs != nullptr) {
        absl::Time since = runs->rearmed_fleet;
        if (auto r = runs->rearmed_agent.find(agent); r != runs->rearmed_agent.end()) {
          since = std::max(since, r->second);
        }
        if (auto a = runs->by_agent.find(agent); a != runs->by_agent.end()) {
          since_rearm = After(a->second, since);
        }
      }
      int extra = 0;
      if (auto p = planned.find(agent); p != planned.end()) {
        extra = p->second;
      }
      const Verdict v = Judge(since_rearm, extra, 1, limits.per_host, limits, now);
      if (v.opens == absl::InfinitePast()) {
        continue;
      }
      return absl::ResourceExhaustedError(absl::StrCat(
          "circuit breaker: ", action, " ran ", v.in_window, " time(s) on ", agent,
          approved(extra), " in the last ", absl::FormatDuration(limits.window), " (at most ",
          limits.per_host, " per host",
          v.cooling ? absl::StrCat(", then a cool-down of ", absl::FormatDuration(limits.cooldown))
                    : "",
          "); it may run there again at ", When(v.opens, now), rearm_hint(agent)));
    }
  }
  if (limits.per_fleet > 0) {
    std::vector<absl::Time> since_rearm;
    if (runs != nullptr) {
      since_rearm = After(runs->fleet, runs->rearmed_fleet);
    }
    int extra = 0;
    for (const auto& [agent, n] : planned) {
      extra += n;
    }
    const Verdict v = Judge(since_rearm, extra, agents.size(), limits.per_fleet, limits, now);
    if (v.opens != absl::InfinitePast()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "circuit breaker: ", action, " ran ", v.in_window, " time(s) across the fleet",
          approved(extra), " in the last ", absl::FormatDuration(limits.window), " (at most ",
          limits.per_fleet, " per fleet",
          v.cooling ? absl::StrCat(", then a cool-down of ", absl::FormatDuration(limits.cooldown))
                    : "",
          "); ", agents.size(), " more may run at ",
          v.opens == absl::InfiniteFuture() ? "no time within one window: ask for fewer agents"
                                            : When(v.opens, now),
          rearm_hint("")));
    }
  }
  return absl::OkStatus();
}

void RunLedger::Prune(absl::Time now) {
  const absl::Time oldest = now - kHorizon;
  for (auto it = actions_.begin(); it != actions_.end();) {
    ActionRuns& runs = it->second;
    while (!runs.fleet.empty() && runs.fleet.front() < oldest) {
      runs.fleet.pop_front();
    }
    for (auto a = runs.by_agent.begin(); a != runs.by_agent.end();) {
      while (!a->second.empty() && a->second.front() < oldest) {
        a->second.pop_front();
      }
      a = a->second.empty() ? runs.by_agent.erase(a) : std::next(a);
    }
    std::erase_if(runs.rearmed_agent, [oldest](const auto& entry) { return entry.second < oldest; });
    it = runs.fleet.empty() && runs.rearmed_agent.empty() ? actions_.erase(it) : std::next(it);
  }
}

size_t RunLedger::runs() const {
  size_t n = 0;
  for (const auto& [action, runs] : actions_) {
    n += runs.fleet.size();
  }
  return n;
}

}  // namespace vigil::controller
