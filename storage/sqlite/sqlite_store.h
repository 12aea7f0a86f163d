// SqliteStore: the embedded default Store. WAL journal, one writer connection (every write is one
// BEGIN IMMEDIATE transaction under a mutex) and a small set of read-only connections, one per
// concurrent read (reader_connections.h), so reads never queue behind writes or each other. Schema changes are numbered migrations tracked in PRAGMA user_version.
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "storage/store.h"

namespace vigil::storage {

// The schema version this build writes. A newer database is refused, an older one migrated.
inline constexpr int kSqliteSchemaVersion = 5;

// Opens (creating file and folder when missing) and migrates. Errors name the path.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

// Turns SQLite's memory statistics off for the process (OpenSqliteStore does it first); true when
// they are off. Only possible before the process's first use of SQLite: a program that uses SQLite
// itself before opening a store (a benchmark's bare tables) calls it first.
bool TurnOffSqliteMemoryStatistics();

// For the commands that work on a controller's database (`vigil-controller users`, `audit`):
// opens it only when it exists; a missing file is NotFound naming it (a wrong --db, which an
// empty database made there would only hide).
absl::StatusOr<std::unique_ptr<Store>> OpenExistingSqliteStore(const std::string& path);

}  // namespace vigil::storage
