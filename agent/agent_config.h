// The agent's YAML config (see DESIGN.md, "Agent config"): identity, labels, collectors and
// actions. Loading is strict: unknown keys and wrong types are refused with file, line and key.
// Immutable once loaded; thread-safe to read.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "agent/collector.h"
#include "common/tls_files.h"
#include "common/transport.h"

namespace vigil::agent {

struct AgentConfig {
  std::string source;  // the file it came from, for messages ("" = built-in default)
  std::string id;      // default: the host name
  Labels labels;
  std::string controller;                      // host:port; the --controller flag wins
  absl::Duration interval = absl::Seconds(1);  // the --interval flag wins
  std::vector<std::unique_ptr<Collector>> collectors;
  YAML::Node actions;  // validated by the action registry
  YAML::Node service_manager;
  // Commands run only when signed by this key (PEM, read from the file `controller_public_key`
  // names); empty: every command is refused.
  std::string controller_public_key_pem;
  // Ids of commands already run (default /var/lib/vigil/ID.journal, DefaultJournalPath).
  std::string journal_path;
  // The telemetry spool's folder (default: ID.spool beside the journal, so
  // /var/lib/vigil/ID.spool) and its bound in bytes; beyond it the oldest rounds are
  // dropped and reported.
  std::string spool_dir;
  uint64_t spool_max_bytes = uint64_t{64} << 20;
  // Command results until the controller acknowledges them, and the bytes they may take.
  // Empty: beside the command journal (see ResultJournalPath).
  std::string result_journal_path;
  uint64_t result_journal_max_bytes = 4 << 20;
  // The newest audit checkpoint the controller sent (the agent is a witness of its audit chain).
  // Empty: beside the command journal (see CheckpointPath).
  std::string checkpoint_path;
  // Commands that would stay valid longer than this (expiry minus now) are refused.
  absl::Duration max_command_lifetime = absl::Minutes(15);
  // What the actions reuse from the collectors' config.
  std::string postgres_dsn;
  std::string redis_address;
  // TLS files named by `tls: {ca, cert, key}` (empty: not named); the --tls-* flags win, each on
  // its own. `tls_names` says where each came from ("agent.yaml:5: key 'tls.ca'"), for messages.
  TransportFlags tls;
  TlsFileNames tls_names;
};

// Where a packaged agent keeps its state (journal, results, spool), and where it kept it before.
inline constexpr char kAgentStateDir[] = "/var/lib/vigil";
inline constexpr char kLegacyAgentStateDir[] = "/var/lib/vigil-agent";

// The default command journal: kAgentStateDir/ID.journal.
std::string DefaultJournalPath(const std::string& id);

// Reads and validates `path`. Each collector is built by its factory in `registry`, so a bad
// collector option is reported with its own line.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path,
                                            const CollectorRegistry& registry);
// Parses config text; `name` stands for the file in messages. Pure apart from the collector
// factories and the `controller_public_key` file it names; never throws.
absl::StatusOr<AgentConfig> ParseAgentConfig(absl::string_view text, absl::string_view name,
                                             const CollectorRegistry& registry);
// The default spool folder: ID.spool in the journal's folder.
std::string DefaultSpoolDir(const std::string& journal_path, const std::string& id);

// Where the result journal is: `result_journal`, or beside the command journal
// (/var/lib/vigil/ID.journal -> /var/lib/vigil/ID.results).
std::string ResultJournalPath(const AgentConfig& config);
// Where the audit checkpoint is kept: `audit_checkpoint`, or beside the command journal
// (/var/lib/vigil/ID.journal -> /var/lib/vigil/ID.checkpoint); "" with no journal (in memory).
std::string CheckpointPath(const AgentConfig& config);
// The config used without --config: this host, the host collector only.
absl::StatusOr<AgentConfig> DefaultAgentConfig(const CollectorRegistry& registry);

}  // namespace vigil::agent
