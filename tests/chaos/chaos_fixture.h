// The chaos suite's test fixture: a temp dir, the seed (printed with the command that replays
// it), users and their tokens, a controller on loopback, and agents that can be killed and
// restarted under the same id. Thread-compatible.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/chaos/chaos_support.h"
#include "tests/support/process.h"

namespace vigil::chaos {

// One agent under the suite: the process of its current incarnation, when it started, and the
// lifetimes of the incarnations that were SIGKILLed.
struct AgentSlot {
  std::string id;
  std::vector<std::string> argv;
  std::unique_ptr<testing::Subprocess> process;
  int incarnations = 0;
  absl::Time started;
  std::vector<absl::Duration> killed;
};

class ChaosTest : public ::testing::Test {
 protected:
  ChaosTest() : rng_(SeedForThisTest()) {}

  // The seed mixed with the test's name, so that each test draws its own faults from one seed.
  static uint64_t SeedForThisTest() {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = absl::StrCat(info->test_suite_name(), ".", info->name());
    uint64_t h = ChaosSeed();
    for (char c : name) {
      h = h * 1099511628211ull ^ static_cast<unsigned char>(c);
    }
    printf("chaos seed: %llu (replay: VIGIL_CHAOS_SEED=%llu %s --gtest_filter=%s)\n",
           static_cast<unsigned long long>(ChaosSeed()),
           static_cast<unsigned long long>(ChaosSeed()),
           "build/tests/chaos/chaos_test", name.c_str());
    ::testing::Test::RecordProperty("chaos_seed", std::to_string(ChaosSeed()));
    return h;
  }

  std::string db() const { return dir_.File("data/vigil.db"); }

  // A user made with `vigil-controller users add`; its token.
  std::string AddUser(const std::string& name, const std::string& role) {
    return testing::AddVigilUser(db_override_.empty() ? db() : db_override_, name, role);
  }

  ControllerOptions LoopbackController(const std::string& rules_yaml = "") {
    ControllerOptions o;
    o.db = db_override_.empty() ? db() : db_override_;
    o.listen = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
    o.log_dir = dir_.path();
    if (!rules_yaml.empty()) {
      testing::WriteFile(dir_.File("rules.yaml"), rules_yaml);
      o.rules = dir_.File("rules.yaml");
    }
    return o;
  }

  // Agent ids carry the seed and pid, so that files an agent keeps by id outside the temp dir
  // (a default spool or journal) never meet another run's.
  std::string AgentId(const std::string& base) const {
    return absl::StrCat(base, "-", getpid() % 100000);
  }

  // An agent config: host collector, a journal in the temp dir, and `extra` YAML lines.
  std::string WriteAgentConfig(const std::string& id, const std::string& extra = "") {
    const std::string path = dir_.File(id + ".yaml");
    testing::WriteFile(
        path, absl::StrCat("id: ", id, "\nlabels: {role: api, service: chaos}\n",
                           "collectors:\n  host: {}\njournal: ", dir_.File(id + ".journal"), "\n",
                           extra));
    return path;
  }

  void StartAgentSlot(AgentSlot& slot) {
    ++slot.incarnations;
    slot.started = absl::Now();
    slot.process = std::make_unique<testing::Subprocess>(
        slot.argv, std::map<std::string, std::string>{},
        dir_.File(absl::StrCat(slot.id, "-", slot.incarnations, ".log")));
  }

  void KillAgentSlot(AgentSlot& slot) {
    if (slot.process && slot.process->Running()) {
      slot.process->Kill();
      slot.killed.push_back(absl::Now() - slot.started);
    }
  }

  void TearDown() override {
    // Files kept by agent id outside the temp dir (a default spool or journal location).
    for (const std::string& id : agent_ids_) {
      for (const char* dir : {"/var/lib/vigil/", "/var/lib/vigil-agent/"}) {
        for (const char* suffix : {".spool", ".journal"}) {
          unlink(absl::StrCat(dir, id, suffix).c_str());
        }
      }
    }
  }

  testing::TempDir dir_;
  ChaosRng rng_;
  std::string db_override_;
  std::vector<std::string> agent_ids_;
};

}  // namespace vigil::chaos
