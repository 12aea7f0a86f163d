// Shared pieces of the chaos suite: a seeded random source that says how to replay it, a
// controller that can be killed, frozen and restarted on the same address, a fault schedule
// drawn up front from the seed, the agent's "telemetry totals" line, a soak report for
// bench/chaos.sh, and root-only fixtures (a small tmpfs, a network namespace with a veth pair,
// packet loss with nftables) that clean up even when the test fails.
// Thread-compatible, except ChaosController, whose process operations take a lock so that a
// fault thread and the test thread can share it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "tests/support/process.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil::chaos {

// The suite's seed: VIGIL_CHAOS_SEED when set, else a fresh one. Printed once per test with the
// command that replays it.
uint64_t ChaosSeed();

// A seeded generator; every random choice of a test goes through one, so a seed replays it.
class ChaosRng {
 public:
  explicit ChaosRng(uint64_t seed) : engine_(seed) {}
  int Int(int lo, int hi);  // inclusive
  absl::Duration Between(absl::Duration lo, absl::Duration hi);
  bool Chance(double p);

 private:
  std::mt19937_64 engine_;
};

// A multiplier for fault counts and durations (VIGIL_CHAOS_SCALE, default 1), for the soak.
int ChaosScale();

// Appends "key value" lines to VIGIL_CHAOS_REPORT when set (bench/chaos.sh adds them up).
void Report(const std::string& key, double value);

// How a controller is started: its addresses and flags, and how the CLI reaches it.
struct ControllerOptions {
  std::string db;             // --db
  std::string listen;         // --listen HOST:PORT
  std::string http_listen;    // --http-listen, "off" by default
  std::string rules;          // --rules, when set
  std::string policy;         // --policy, when set
  std::vector<std::string> transport = {"--insecure"};  // or --tls-* flags
  std::vector<std::string> cli_transport = {"--insecure"};
  std::string log_dir;        // controller-N.log files land here
};

// A vigil-controller process that the suite kills, freezes and restarts on the same address
// and database. Thread-safe.
class ChaosController {
 public:
  explicit ChaosController(ControllerOptions options) : options_(std::move(options)) {}
  ~ChaosController();

  // Starts it and waits until the API answers (`vigil agents` with `token`); false on timeout.
  bool Start(const std::string& token, absl::Duration timeout = absl::Seconds(20));
  void Kill();    // SIGKILL and reap
  void Freeze();  // SIGSTOP
  void Thaw();    // SIGCONT
  int Stop();     // SIGTERM (after SIGCONT); the exit code
  bool Running();
  int starts() const;
  std::string Output();  // the current incarnation's log

  // Runs the CLI against it: `vigil --controller=... TRANSPORT --token=T ARGS`.
  testing::CommandResult Cli(const std::string& token, std::vector<std::string> args,
                             absl::Duration timeout = absl::Seconds(10)) const;
  const ControllerOptions& options() const { return options_; }

 private:
  const ControllerOptions options_;
  mutable absl::Mutex mu_;
  std::unique_ptr<testing::Subprocess> process_ ABSL_GUARDED_BY(mu_);
  int starts_ ABSL_GUARDED_BY(mu_) = 0;
};

// The agents as the controller lists them (`vigil agents -o json`), by id; nullopt when the
// controller did not answer.
std::optional<std::map<std::string, v1::AgentInfo>> ListAgents(const ChaosController& controller,
                                                               const std::string& token);

// The line a vigil-agent logs on SIGTERM:
// "telemetry totals: collected=N sent=N acknowledged_through=SEQ dropped=N refused=N spooled=N".
struct TelemetryTotals {
  uint64_t collected = 0;
  uint64_t sent = 0;
  uint64_t acknowledged_through = 0;
  uint64_t dropped = 0;
  uint64_t refused = 0;
  uint64_t spooled = 0;
  uint64_t replayed = 0;  // of `collected`, read back from an earlier incarnation's spool
};
// The last such line in `log`; nullopt when there is none or it does not parse.
std::optional<TelemetryTotals> ParseTelemetryTotals(const std::string& log);

// One fault at a point in time: what, on whom, for how long.
struct Fault {
  enum Kind { kKillController, kFreezeController, kKillAgent, kKillAgentDuringOutage };
  absl::Duration at;     // after the previous fault ended
  Kind kind;
  int agent = 0;         // for agent faults
  absl::Duration down;   // how long the victim stays dead or frozen
  std::string Describe() const;
};

// A random number of faults between `min_faults` and `max_faults` (times ChaosScale()), each
// `gap` apart at most; `agents` == 0 draws controller faults only.
std::vector<Fault> DrawFaults(ChaosRng& rng, int min_faults, int max_faults, int agents,
                              absl::Duration max_gap, bool freezes);

// Runs controller faults (kKillController: SIGKILL, wait, restart; kFreezeController: SIGSTOP,
// wait, SIGCONT) on a thread of its own while the test drives traffic. A controller it restarts
// is its child, and a child dies with the thread that forked it (PR_SET_PDEATHSIG): the thread
// stays alive, idle, until destruction, so keep this object as long as the controller is used.
class ControllerFaultThread {
 public:
  ControllerFaultThread(ChaosController& controller, std::string token, std::vector<Fault> faults);
  ~ControllerFaultThread();
  bool done() const { return done_; }
  bool failed() const { return failed_; }  // the controller did not come back
  int kills() const { return kills_; }

 private:
  std::atomic<bool> done_{false};
  std::atomic<bool> failed_{false};
  std::atomic<int> kills_{0};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// A small tmpfs mounted on `dir` (created), unmounted (lazily, even when busy) on destruction.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, const std::string& size);
  ~TmpfsMount();
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool ok_ = false;
  std::string error_;
};

// Fills the file system holding `path` by writing zeros to it until ENOSPC; the bytes written.
int64_t FillDisk(const std::string& path);

// A network namespace owned by the test with a veth pair on a private /30: the root side
// `outer_address()`, the namespace side `inner_address()`. Deleted (with its nft tables) on
// destruction.
class NetNamespace {
 public:
  NetNamespace();
  ~NetNamespace();
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  const std::string& outer_address() const { return outer_; }
  const std::string& inner_address() const { return inner_; }
  // argv run inside the namespace (ip netns exec NAME ...).
  std::vector<std::string> Exec(std::vector<std::string> argv) const;
  // The link between the namespace and the root, down or up (from the root side).
  bool SetLink(bool up);
  // Drops `percent` of packets both ways inside the namespace with nftables (numgen random), or
  // removes that table when percent is 0.
  bool DropPackets(int percent);

 private:
  std::string name_;
  std::string outer_link_;
  std::string outer_;
  std::string inner_;
  bool ok_ = false;
  std::string error_;
};

bool IsRoot();

}  // namespace vigil::chaos
