// PostgreSQL maintenance, typed (never free SQL): pg_vacuum_analyze{table?} runs VACUUM (ANALYZE)
// on one table or the whole database; pg_reindex_concurrently{index} runs REINDEX INDEX
// CONCURRENTLY; pg_create_index_concurrently{table, columns, name, method?} runs CREATE INDEX
// CONCURRENTLY on plain columns. The three share this file pair because they share the checks:
//
// - every identifier is [A-Za-z_][A-Za-z0-9_]*, at most 63 bytes, optionally schema-qualified
//   ("public.documents"); columns are a comma-separated list of such names (at most max_columns);
// - the table or index is looked up in the catalog (pg_class, pg_attribute) and refused when it
//   does not exist, is of another kind, or lives in a system schema; the new index's name must
//   be free; the SQL is built only from the catalog's names, quoted with quote_name;
// - `tables` (optional globs on schema.table) limits the tables they may touch (an index, by its
//   table); with it, pg_vacuum_analyze needs a table.
//
//   actions:
//     pg_vacuum_analyze: {tables: ["public.*"]}          # optional
//     pg_reindex_concurrently: {tables: ["public.documents"]}
//     pg_create_index_concurrently: {tables: ["public.*"], max_columns: 4}
//
// They connect with the postgres collector's DSN (collectors.postgres.dsn), tagged
// application_name=vigil-agent-action, with statement_timeout (what is left of the action's
// timeout, less a margin) and a socket watchdog at its deadline. An index that CREATE INDEX
// CONCURRENTLY leaves invalid (it failed or timed out) is dropped again, on a connection of its
// own bounded by 5 s. Used by the command executor's thread only.
#pragma once

#include <yaml-cpp/yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agent/actions/action.h"

namespace vigil::agent {

// A checked, unquoted identifier; `schema` is empty when the name was not qualified.
struct PgName {
  std::string schema;
  std::string name;
};
// `text` as [schema.]name; the error names `action` and `param`.
absl::StatusOr<PgName> ParsePgName(absl::string_view text, absl::string_view action,
                                   absl::string_view param);
// "a, b" -> {a, b}: plain names, none repeated, 1 to `max_columns` of them.
absl::StatusOr<std::vector<std::string>> ParsePgColumns(absl::string_view text,
                                                        absl::string_view action,
                                                        size_t max_columns);

absl::StatusOr<std::unique_ptr<Action>> NewPgVacuumAnalyzeAction(const YAML::Node& options,
                                                                 const ActionContext& context,
                                                                 absl::string_view file);
absl::StatusOr<std::unique_ptr<Action>> NewPgReindexConcurrentlyAction(const YAML::Node& options,
                                                                       const ActionContext& context,
                                                                       absl::string_view file);
absl::StatusOr<std::unique_ptr<Action>> NewPgCreateIndexConcurrentlyAction(
    const YAML::Node& options, const ActionContext& context, absl::string_view file);

}  // namespace vigil::agent
