// Sensing between collection rounds: the thresholds the controller sends, the crossing detector,
// a collector runner that checks them between rounds (simulated clock), and a whole agent that
// sends an early batch to an in-process controller before its next round.
#include "agent/threshold_watch.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/agent.h"
#include "agent/collector_runner.h"
#include "agent/collectors/host_collector.h"
#include "common/clock.h"
#include "tests/support/process.h"

namespace vigil::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

v1::WatchThreshold Threshold(const std::string& metric, v1::WatchThreshold::Comparison op,
                             double value) {
  v1::WatchThreshold t;
  t.set_metric(metric);
  t.set_comparison(op);
  t.set_threshold(value);
  t.set_rule(absl::StrCat("Rule_", metric));
  return t;
}

void AddMatcher(v1::WatchThreshold& t, const std::string& label, v1::WatchMatcher::Op op,
                const std::string& value) {
  v1::WatchMatcher* m = t.add_matchers();
  m->set_label(label);
  m->set_op(op);
  m->set_value(value);
}

std::shared_ptr<const ThresholdSet> Build(std::vector<v1::WatchThreshold> thresholds,
                                          Labels agent_labels = {},
                                          std::vector<std::string>* errors = nullptr) {
  v1::WatchThresholds message;
  for (auto& t : thresholds) {
    *message.add_thresholds() = std::move(t);
  }
  std::vector<std::string> local;
  return ThresholdSet::Build(message, std::move(agent_labels), errors ? errors : &local);
}

GaugePoint Point(const std::string& name, double value, Labels labels = {}) {
  return GaugePoint{name, std::move(labels), value};
}

// ---- the set ----

TEST(ThresholdSet, MalformedThresholdsAreLeftOutAndNamed) {
  v1::WatchThreshold bad_regex = Threshold("host_load1", v1::WatchThreshold::GREATER, 1);
  AddMatcher(bad_regex, "role", v1::WatchMatcher::REGEX, "(unclosed");
  v1::WatchThreshold no_op = Threshold("host_load1", v1::WatchThreshold::COMPARISON_UNSPECIFIED, 1);
  v1::WatchThreshold unknown_op = Threshold("host_load1", v1::WatchThreshold::GREATER, 1);
  AddMatcher(unknown_op, "role", static_cast<v1::WatchMatcher::Op>(99), "x");
  v1::WatchThreshold nan = Threshold("host_load1", v1::WatchThreshold::GREATER, std::nan(""));
  v1::WatchThreshold no_metric = Threshold("", v1::WatchThreshold::GREATER, 1);
  v1::WatchThreshold long_label = Threshold("host_load1", v1::WatchThreshold::GREATER, 1);
  AddMatcher(long_label, std::string(300, 'l'), v1::WatchMatcher::EQUAL, "x");
  v1::WatchThreshold many = Threshold("host_load1", v1::WatchThreshold::GREATER, 1);
  for (int i = 0; i <= kMaxWatchMatchers; ++i) {
    AddMatcher(many, "role", v1::WatchMatcher::EQUAL, "x");
  }
  v1::WatchThreshold good = Threshold("host_load1", v1::WatchThreshold::GREATER, 4);
  std::vector<std::string> errors;
  auto set =
      Build({bad_regex, no_op, unknown_op, nan, no_metric, long_label, many, good}, {}, &errors);
  ASSERT_EQ(set->size(), 1u);
  EXPECT_EQ(set->thresholds()[0].threshold, 4);
  ASSERT_THAT(errors, SizeIs(7));
  EXPECT_THAT(errors[0], HasSubstr("threshold 0"));
  EXPECT_THAT(errors[0], HasSubstr("bad regular expression"));
  EXPECT_THAT(errors[1], HasSubstr("comparison 0 unknown"));
  EXPECT_THAT(errors[2], HasSubstr("operator 99 unknown"));
  EXPECT_THAT(errors[3], HasSubstr("not a finite number"));
  EXPECT_THAT(errors[4], HasSubstr("metric empty"));
  EXPECT_THAT(errors[5], HasSubstr("matcher 0"));
  EXPECT_THAT(errors[6], HasSubstr("17 matchers"));
  EXPECT_THAT(set->metrics(), ElementsAre("host_load1"));
}

TEST(ThresholdSet, AtMostTheBoundIsTaken) {
  v1::WatchThresholds message;
  for (int i = 0; i < kMaxWatchThresholds + 5; ++i) {
    *message.add_thresholds() = Threshold("host_load1", v1::WatchThreshold::GREATER, i);
  }
  std::vector<std::string> errors;
  auto set = ThresholdSet::Build(message, {}, &errors);
  EXPECT_EQ(set->size(), static_cast<size_t>(kMaxWatchThresholds));
  EXPECT_THAT(errors, ElementsAre(HasSubstr("more than the 1024 taken")));
}

TEST(ThresholdSet, MatchersReadSeriesLabelsThenTheAgentsAndMissingIsEmpty) {
  v1::WatchThreshold t = Threshold("host_disk_used_ratio", v1::WatchThreshold::GREATER, 0.8);
  AddMatcher(t, "mount", v1::WatchMatcher::REGEX, "/d.*");
  AddMatcher(t, "role", v1::WatchMatcher::EQUAL, "db");
  AddMatcher(t, "zone", v1::WatchMatcher::NOT_REGEX, ".+");  // missing: reads ""
  auto set = Build({t}, {{"role", "db"}});
  const WatchedThreshold& w = set->thresholds()[0];
  EXPECT_TRUE(w.Matches({{"mount", "/data"}}, set->agent_labels()));
  EXPECT_FALSE(w.Matches({{"mount", "/data2x"}, {"zone", "a"}}, set->agent_labels()));
  EXPECT_FALSE(w.Matches({{"mount", "/"}}, set->agent_labels()));
  // A series label wins over the agent's own.
  EXPECT_FALSE(w.Matches({{"mount", "/data"}, {"role", "api"}}, set->agent_labels()));
  EXPECT_FALSE(w.Matches({{"mount", "/data"}}, {{"role", "api"}}));
}

TEST(ThresholdSet, Comparisons) {
  auto met = [](v1::WatchThreshold::Comparison op, double value) {
    return Build({Threshold("host_load1", op, 2)})->thresholds()[0].Met(value);
  };
  EXPECT_TRUE(met(v1::WatchThreshold::GREATER, 3));
  EXPECT_FALSE(met(v1::WatchThreshold::GREATER, 2));
  EXPECT_TRUE(met(v1::WatchThreshold::GREATER_EQUAL, 2));
  EXPECT_TRUE(met(v1::WatchThreshold::LESS, 1));
  EXPECT_FALSE(met(v1::WatchThreshold::LESS, 2));
  EXPECT_TRUE(met(v1::WatchThreshold::LESS_EQUAL, 2));
  EXPECT_TRUE(met(v1::WatchThreshold::EQUAL, 2));
  EXPECT_TRUE(met(v1::WatchThreshold::NOT_EQUAL, 3));
  EXPECT_FALSE(met(v1::WatchThreshold::NOT_EQUAL, 2));
}

// ---- the detector ----

TEST(CrossingDetector, OncePerCrossingPerSeries) {
  auto set = Build({Threshold("host_disk_used_ratio", v1::WatchThreshold::GREATER, 0.8)});
  CrossingDetector d;
  const std::vector<GaugePoint> low = {Point("host_disk_used_ratio", 0.5, {{"mount", "/"}}),
                                       Point("host_disk_used_ratio", 0.5, {{"mount", "/d"}})};
  const std::vector<GaugePoint> root_high = {Point("host_disk_used_ratio", 0.9, {{"mount", "/"}}),
                                             Point("host_disk_used_ratio", 0.5, {{"mount", "/d"}})};
  const std::vector<GaugePoint> both_high = {Point("host_disk_used_ratio", 0.9, {{"mount", "/"}}),
                                             Point("host_disk_used_ratio", 0.9, {{"mount", "/d"}})};
  EXPECT_THAT(d.Crossings(*set, low), IsEmpty());
  d.Record(*set, low);
  auto crossings = d.Crossings(*set, root_high);
  ASSERT_THAT(crossings, SizeIs(1));
  EXPECT_EQ(crossings[0].point->labels.at("mount"), "/");
  EXPECT_EQ(crossings[0].threshold->rule, "Rule_host_disk_used_ratio");
  // Crossings() changes nothing: asked again, the same answer.
  EXPECT_THAT(d.Crossings(*set, root_high), SizeIs(1));
  d.Record(*set, root_high);
  EXPECT_THAT(d.Crossings(*set, root_high), IsEmpty());  // still over: no new crossing
  crossings = d.Crossings(*set, both_high);              // the other series crosses
  ASSERT_THAT(crossings, SizeIs(1));
  EXPECT_EQ(crossings[0].point->labels.at("mount"), "/d");
  d.Record(*set, both_high);
  d.Record(*set, low);  // both leave the threshold
  EXPECT_THAT(d.Crossings(*set, both_high), SizeIs(2));
  // Metrics without thresholds are ignored.
  EXPECT_THAT(d.Crossings(*set, {Point("host_load1", 100)}), IsEmpty());
  d.Reset();
  d.Record(*set, both_high);
  EXPECT_THAT(d.Crossings(*set, both_high), IsEmpty());
}

// ---- a collector runner sensing between rounds ----

// A gauge the test sets; rounds and checks between rounds read it and are counted.
struct GaugeState {
  std::atomic<double> value{5};
  std::atomic<int> rounds{0};
  std::atomic<int> senses{0};
};

class FakeGaugeCollector final : public Collector {
 public:
  explicit FakeGaugeCollector(std::shared_ptr<GaugeState> state) : state_(std::move(state)) {}
  absl::string_view name() const override { return "fake"; }
  void Collect(absl::Time now, Collection& out) override {
    out.Gauge("redis_connected_clients", state_->value.load());
    out.Gauge("redis_ops_per_second", 1);  // not sensed
    state_->rounds.fetch_add(1);
  }
  std::vector<std::string> SensedGauges() const override {
    return {"redis_connected_clients", "redis_used_memory_bytes"};
  }
  void Sense(absl::Time now, const std::vector<std::string>& names, Collection& out) override {
    for (const std::string& n : names) {
      if (n == "redis_connected_clients") {
        out.Gauge(n, state_->value.load());
      }
    }
    state_->senses.fetch_add(1);
  }

 private:
  std::shared_ptr<GaugeState> state_;
};

class SensingRunnerTest : public ::testing::Test {
 protected:
  void Start(std::shared_ptr<const ThresholdSet> set) {
    watch_.Replace(std::move(set));
    runner_ = std::make_unique<CollectorRunner>(
        std::make_unique<FakeGaugeCollector>(state_), absl::Seconds(1), &clock_,
        [this](Collection c) {
          absl::MutexLock lock(&mu_);
          sunk_.push_back(std::move(c));
        },
        SensingOptions{.watch = &watch_,
                       .every = absl::Milliseconds(100),
                       .min_early_gap = absl::Milliseconds(250)});
    runner_->Start();
    // Taken at T0 + 50 ms: checks are due every 100 ms from then on.
    ASSERT_TRUE(testing::WaitUntil([&] { return runner_->thresholds_taken() == 1; },
                                   absl::Seconds(5), absl::Milliseconds(1)));
  }
  void TearDown() override {
    if (runner_ != nullptr) {
      runner_->Stop();
    }
  }
  // Moves the clock to T0 + `ms` and waits until the check between rounds due then is over: the
  // runner's count, not the collector's reading, which comes before any early snapshot is sent
  // (waiting for the reading failed once in a full test run, the snapshot not yet sent).
  void SenseAt(int ms, double value) {
    state_->value = value;
    const uint64_t before = runner_->checks_done();
    clock_.Set(t0_ + absl::Milliseconds(ms));
    ASSERT_TRUE(testing::WaitUntil([&] { return runner_->checks_done() > before; },
                                   absl::Seconds(5), absl::Milliseconds(5)))
        << "no check at T0+" << ms << "ms";
  }
  std::vector<Collection> Sunk() {
    absl::MutexLock lock(&mu_);
    return sunk_;
  }
  static double Clients(const Collection& c) {
    for (const GaugePoint& g : c.gauges) {
      if (g.name == "redis_connected_clients") {
        return g.value;
      }
    }
    return -1;
  }

  const absl::Time t0_ = absl::FromUnixSeconds(1'700'000'000);
  SimulatedClock clock_{t0_ + absl::Milliseconds(50)};
  std::shared_ptr<GaugeState> state_ = std::make_shared<GaugeState>();
  ThresholdWatch watch_;
  std::unique_ptr<CollectorRunner> runner_;
  absl::Mutex mu_;
  std::vector<Collection> sunk_ ABSL_GUARDED_BY(mu_);
};

TEST_F(SensingRunnerTest, ACrossingBetweenRoundsIsSentAtOnceOncePerCrossingRateLimited) {
  Start(Build({Threshold("redis_connected_clients", v1::WatchThreshold::GREATER, 20)}));
  SenseAt(150, 5);  // under: nothing
  EXPECT_THAT(Sunk(), IsEmpty());
  SenseAt(250, 30);  // crosses: an early snapshot, stamped when sensed, long before T0+1s
  std::vector<Collection> sunk = Sunk();
  ASSERT_THAT(sunk, SizeIs(1));
  EXPECT_EQ(sunk[0].time, t0_ + absl::Milliseconds(250));
  EXPECT_EQ(Clients(sunk[0]), 30);
  ASSERT_THAT(sunk[0].gauges, SizeIs(1));  // only what was sensed, no rates
  EXPECT_EQ(runner_->early_snapshots(), 1u);
  SenseAt(350, 31);  // still over: the same crossing, nothing more
  EXPECT_THAT(Sunk(), SizeIs(1));
  SenseAt(450, 5);   // leaves the threshold
  SenseAt(550, 30);  // and crosses again, 300 ms after the last early snapshot
  ASSERT_THAT(Sunk(), SizeIs(2));
  EXPECT_EQ(Sunk()[1].time, t0_ + absl::Milliseconds(550));
  SenseAt(650, 5);
  SenseAt(750, 30);  // only 200 ms after the last one: held back
  EXPECT_THAT(Sunk(), SizeIs(2));
  EXPECT_EQ(runner_->early_held_back(), 1u);
  SenseAt(850, 30);  // still over once the gap has passed: sent now
  ASSERT_THAT(Sunk(), SizeIs(3));
  EXPECT_EQ(Sunk()[2].time, t0_ + absl::Milliseconds(850));
  EXPECT_EQ(state_->rounds.load(), 0);  // all of it before the first round

  // The round at T0+1s reads everything; it says over, so the next check is no crossing.
  clock_.Set(t0_ + absl::Seconds(1));
  ASSERT_TRUE(testing::WaitUntil([&] { return Sunk().size() == 4; }, absl::Seconds(5),
                                 absl::Milliseconds(5)));
  EXPECT_EQ(Sunk()[3].time, t0_ + absl::Seconds(1));
  EXPECT_THAT(Sunk()[3].gauges, SizeIs(2));
  SenseAt(1100, 30);
  SenseAt(1200, 30);
  EXPECT_THAT(Sunk(), SizeIs(4));
  EXPECT_EQ(runner_->early_snapshots(), 3u);
}

TEST_F(SensingRunnerTest, NoThresholdsOnItsGaugesNoChecks) {
  Start(Build({Threshold("host_load1", v1::WatchThreshold::GREATER, 4)}));
  clock_.Set(t0_ + absl::Milliseconds(500));
  absl::SleepFor(absl::Milliseconds(200));  // several of the runner's polls
  clock_.Set(t0_ + absl::Seconds(1));
  ASSERT_TRUE(testing::WaitUntil([&] { return state_->rounds.load() == 1; }, absl::Seconds(5),
                                 absl::Milliseconds(5)));
  EXPECT_EQ(state_->senses.load(), 0);
}

TEST_F(SensingRunnerTest, ANewSetStartsFromTheLastRoundsValues) {
  Start(Build({Threshold("redis_connected_clients", v1::WatchThreshold::GREATER, 20)}));
  state_->value = 30;
  clock_.Set(t0_ + absl::Seconds(1));  // the round says over
  ASSERT_TRUE(testing::WaitUntil([&] { return Sunk().size() == 1; }, absl::Seconds(5),
                                 absl::Milliseconds(5)));
  // The same thresholds again (a reconnect): over already by the round, so no crossing.
  watch_.Replace(Build({Threshold("redis_connected_clients", v1::WatchThreshold::GREATER, 20)}));
  ASSERT_TRUE(testing::WaitUntil([&] { return runner_->thresholds_taken() == 2; },
                                 absl::Seconds(5), absl::Milliseconds(1)));
  SenseAt(1100, 30);
  SenseAt(1200, 30);
  EXPECT_THAT(Sunk(), SizeIs(1));
  // A stricter set: 30 is under 40, then 45 crosses.
  watch_.Replace(Build({Threshold("redis_connected_clients", v1::WatchThreshold::GREATER, 40)}));
  ASSERT_TRUE(testing::WaitUntil([&] { return runner_->thresholds_taken() == 3; },
                                 absl::Seconds(5), absl::Milliseconds(1)));
  SenseAt(1300, 45);
  ASSERT_THAT(Sunk(), SizeIs(2));
  EXPECT_EQ(Sunk()[1].time, t0_ + absl::Milliseconds(1300));
  EXPECT_EQ(Clients(Sunk()[1]), 45);
}

// Voluntary context switches of all this process's threads so far: each sleep that ends is one.
int64_t ProcessSwitches() {
  int64_t total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::istringstream status(testing::ReadFileOrEmpty(task.path().string() + "/status"));
    for (std::string line; std::getline(status, line);) {
      // Voluntary only: how often a loaded machine preempts us is not the runner's doing.
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        total += std::stoll(line.substr(line.find(':') + 1));
      }
    }
  }
  return total;
}

TEST(RoundPhase, FixedByTheIdWithinTheIntervalAndSpreadOverIt) {
  const absl::Duration interval = absl::Seconds(1);
  // FNV-1a of the id: the same on every build and host, so an agent keeps its phase across
  // restarts and upgrades.
  EXPECT_EQ(RoundPhase("web-1", interval), absl::Milliseconds(439));
  EXPECT_EQ(RoundPhase("web-1", interval), RoundPhase("web-1", interval));
  EXPECT_EQ(RoundPhase("cache-1", absl::Seconds(2)), absl::Milliseconds(315));
  EXPECT_EQ(RoundPhase("web-1", absl::ZeroDuration()), absl::ZeroDuration());
  // 1,000 agents fill every tenth of the interval, none with more than twice its share.
  std::map<int64_t, int> tenths;
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration phase = RoundPhase(absl::StrCat("web-", i), interval);
    ASSERT_GE(phase, absl::ZeroDuration());
    ASSERT_LT(phase, interval);
    ++tenths[absl::ToInt64Milliseconds(phase) / 100];
  }
  ASSERT_EQ(tenths.size(), 10u);
  for (const auto& [tenth, agents] : tenths) {
    EXPECT_LE(agents, 200) << "tenth " << tenth;
  }
}

TEST(PhasedRunner, RoundsFallAtThePhasePastEachInterval) {
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  SimulatedClock clock(t0 + absl::Milliseconds(50));
  absl::Mutex mu;
  std::vector<absl::Time> rounds;
  CollectorRunner runner(
      std::make_unique<FakeGaugeCollector>(std::make_shared<GaugeState>()), absl::Seconds(1),
      &clock,
      [&](Collection c) {
        absl::MutexLock lock(&mu);
        rounds.push_back(c.time);
      },
      SensingOptions{}, absl::Milliseconds(300));
  runner.Start();
  auto count = [&] {
    absl::MutexLock lock(&mu);
    return rounds.size();
  };
  // Not before its phase: at T0 + 250 ms nothing yet.
  clock.Set(t0 + absl::Milliseconds(250));
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_EQ(count(), 0u);
  clock.Set(t0 + absl::Milliseconds(300));
  ASSERT_TRUE(
      testing::WaitUntil([&] { return count() == 1; }, absl::Seconds(5), absl::Milliseconds(5)));
  clock.Set(t0 + absl::Milliseconds(1310));
  ASSERT_TRUE(
      testing::WaitUntil([&] { return count() == 2; }, absl::Seconds(5), absl::Milliseconds(5)));
  runner.Stop();
  absl::MutexLock lock(&mu);
  EXPECT_EQ(rounds[0], t0 + absl::Milliseconds(300));
  EXPECT_EQ(rounds[1], t0 + absl::Milliseconds(1300));  // the round's instant, not the wake-up
}

// With the real clock a runner sleeps to its next deadline instead of polling, yet a new
// threshold set, a diagnostics request and Stop each wake it at once.
TEST(SleepingRunnerTest, SleepsToItsDeadlineAndWakesAtOnceForWork) {
  auto state = std::make_shared<GaugeState>();
  ThresholdWatch watch;
  CollectorRunner runner(std::make_unique<FakeGaugeCollector>(state), absl::Hours(1),
                         RealClock::Get(), [](Collection) {},
                         SensingOptions{.watch = &watch,
                                        .every = absl::Hours(1),
                                        .min_early_gap = absl::Hours(1)});
  runner.Start();
  absl::SleepFor(absl::Milliseconds(100));  // to its first wait
  const int64_t before = ProcessSwitches();
  absl::SleepFor(absl::Milliseconds(500));
  // This thread's sleep is one; a runner polling every 50 ms would add about ten.
  EXPECT_LE(ProcessSwitches() - before, 3);

  const absl::Time replaced = absl::Now();
  watch.Replace(Build({Threshold("redis_connected_clients", v1::WatchThreshold::GREATER, 20)}));
  ASSERT_TRUE(testing::WaitUntil([&] { return runner.thresholds_taken() == 1; },
                                 absl::Seconds(5), absl::Milliseconds(1)));
  // The runner waits an hour between rounds: these bounds only tell waking from waiting.
  EXPECT_LT(absl::Now() - replaced, absl::Seconds(3));

  std::atomic<bool> answered{false};
  const absl::Time asked = absl::Now();
  runner.RequestDiagnostics({}, [&](std::vector<v1::DiagnosticTable>) { answered = true; });
  ASSERT_TRUE(testing::WaitUntil([&] { return answered.load(); }, absl::Seconds(5),
                                 absl::Milliseconds(1)));
  EXPECT_LT(absl::Now() - asked, absl::Seconds(3));

  const absl::Time stopping = absl::Now();
  runner.Stop();
  EXPECT_LT(absl::Now() - stopping, absl::Seconds(3));
  EXPECT_EQ(state->rounds.load(), 0);
  EXPECT_EQ(state->senses.load(), 0);  // the next check was an hour away
}

// ---- what the host collector senses ----

TEST(HostCollectorSense, CpuOverTheTrailingRoundStepMemoryAndLoad) {
  testing::TempDir dir;
  ASSERT_EQ(mkdir(dir.File("self").c_str(), 0700), 0);
  testing::WriteFile(dir.File("self/mounts"), "");
  testing::WriteFile(dir.File("meminfo"), testing::ReadFileOrEmpty(testing::SourcePath(
                                              "tests/unit/agent/fixtures/proc/meminfo")));
  testing::WriteFile(dir.File("loadavg"), "0.52 0.40 0.30 1/100 1234\n");
  auto stat = [&](int user, int idle) {
    testing::WriteFile(dir.File("stat"), absl::StrCat("cpu  ", user, " 0 0 ", idle, " 0 0 0 0\n"));
  };
  auto cpu = [](const Collection& c) {
    for (const GaugePoint& g : c.gauges) {
      if (g.name == "host_cpu_usage_ratio") return g.value;
    }
    return -1.0;
  };
  stat(0, 0);
  HostCollectorOptions options;
  options.proc_root = dir.path();
  HostCollector collector(options);
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  const std::vector<std::string> all = collector.SensedGauges();
  stat(100, 100);
  Collection round;
  collector.Collect(t0, round);
  Collection sensed;
  collector.Sense(t0 + absl::Milliseconds(500), all, sensed);
  EXPECT_EQ(cpu(sensed), -1) << "no round step known yet";
  std::map<std::string, double> values;
  for (const GaugePoint& g : sensed.gauges) values[g.name] = g.value;
  EXPECT_DOUBLE_EQ(values.at("host_load1"), 0.52);
  EXPECT_GT(values.at("host_memory_used_ratio"), 0);
  EXPECT_EQ(values.count("host_up"), 0u) << "only what was asked";

  stat(150, 150);
  collector.Collect(t0 + absl::Seconds(1), round);  // round step: 1 s
  // Busy share since the reading one step back (t0: 100 busy of 200), not since the round.
  stat(250, 150);
  sensed = Collection{};
  collector.Sense(t0 + absl::Milliseconds(1100), {"host_cpu_usage_ratio"}, sensed);
  EXPECT_DOUBLE_EQ(cpu(sensed), 150.0 / 200.0);
  ASSERT_THAT(sensed.gauges, SizeIs(1));
  stat(400, 160);
  sensed = Collection{};
  collector.Sense(t0 + absl::Milliseconds(2050), {"host_cpu_usage_ratio"}, sensed);
  EXPECT_DOUBLE_EQ(cpu(sensed), 250.0 / 260.0);  // since the round at t0 + 1 s
}

// ---- a whole agent against an in-process controller ----

// Welcomes the agent, sends it one threshold, and records every telemetry value with the time
// it arrived, acknowledging each batch.
class WatchingController final : public v1::AgentService::Service {
 public:
  struct Value {
    double value;
    absl::Time sampled;
    absl::Time received;
  };
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) override {
    v1::AgentMessage message;
    if (!stream->Read(&message) || !message.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no Hello");
    }
    v1::ControllerMessage welcome;
    welcome.mutable_welcome()->set_heartbeat_timeout_ms(30'000);
    stream->Write(welcome);
    v1::ControllerMessage watch;
    v1::WatchThreshold* t = watch.mutable_watch_thresholds()->add_thresholds();
    t->set_metric("redis_connected_clients");
    t->set_comparison(v1::WatchThreshold::GREATER);
    t->set_threshold(20);
    t->set_rule("TooManyRedisClients");
    v1::WatchMatcher* m = t->add_matchers();
    m->set_label("role");
    m->set_value("cache");
    m->set_op(v1::WatchMatcher::EQUAL);
    stream->Write(watch);
    std::map<uint32_t, std::string> names;  // this stream's series dictionary
    while (stream->Read(&message)) {
      if (!message.has_telemetry() || message.telemetry().sequence() == 0) {
        continue;
      }
      const v1::TelemetryBatch& batch = message.telemetry();
      for (const v1::SeriesDefinition& d : batch.new_series()) {
        names[d.id()] = d.name();
      }
      {
        absl::MutexLock lock(&mu_);
        for (const v1::Snapshot& s : batch.snapshots()) {
          for (int i = 0; i < s.series_ids_size() && i < s.values_size(); ++i) {
            if (names[s.series_ids(i)] == "redis_connected_clients") {
              values_.push_back({s.values(i), absl::FromUnixMillis(s.time_unix_ms()), absl::Now()});
            }
          }
        }
      }
      v1::ControllerMessage ack;
      ack.mutable_ack()->set_sequence(batch.sequence());
      stream->Write(ack);
    }
    return grpc::Status::OK;
  }
  std::vector<Value> values() {
    absl::MutexLock lock(&mu_);
    return values_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Value> values_ ABSL_GUARDED_BY(mu_);
};

TEST(AgentSensing, ACrossingBetweenRoundsReachesTheControllerBeforeTheNextRound) {
  WatchingController controller;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&controller);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  auto state = std::make_shared<GaugeState>();
  AgentConfig config;
  config.id = "cache-1";
  config.labels = {{"role", "cache"}};
  config.collectors.push_back(std::make_unique<FakeGaugeCollector>(state));
  const absl::Duration interval = absl::Seconds(2);
  AgentOptions options{.controller = absl::StrCat("127.0.0.1:", port),
                       .credentials = grpc::InsecureChannelCredentials(),
                       .interval = interval,
                       .sense_every = absl::Milliseconds(50)};
  Agent agent(std::move(config), options, RealClock::Get());
  std::thread run([&] { agent.Run(); });

  // A round reaches the controller (value 5), and the agent holds the threshold.
  ASSERT_TRUE(
      testing::WaitUntil([&] { return !controller.values().empty() && agent.watched() != nullptr; },
                         absl::Seconds(10), absl::Milliseconds(5)));
  const WatchingController::Value round = controller.values().back();
  EXPECT_EQ(round.value, 5);
  // Rounds fall at the agent's own phase past each interval.
  EXPECT_EQ((absl::ToUnixMillis(round.sampled) -
             absl::ToInt64Milliseconds(RoundPhase("cache-1", interval))) %
                absl::ToInt64Milliseconds(interval),
            0)
      << "rounds at the agent's phase";
  const absl::Time next_round = round.sampled + interval;
  // The fault, right after the round.
  state->value = 30;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        for (const auto& v : controller.values()) {
          if (v.value == 30) return true;
        }
        return false;
      },
      absl::Seconds(10), absl::Milliseconds(5)));
  WatchingController::Value early{};
  for (const auto& v : controller.values()) {
    if (v.value == 30) {
      early = v;
      break;
    }
  }
  EXPECT_LT(early.sampled, next_round) << "sensed between rounds, not by the next round";
  EXPECT_LT(early.received, next_round) << "sent at once, not with the next round";
  EXPECT_NE(absl::ToUnixMillis(early.sampled) % absl::ToInt64Milliseconds(interval), 0);
  EXPECT_EQ(agent.early_snapshots(), 1u);
  agent.Stop();
  run.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace
}  // namespace vigil::agent
