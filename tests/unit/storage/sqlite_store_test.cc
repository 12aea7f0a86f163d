// SqliteStore on real temp files: migrations, registry, incidents, the audit chain and tampering.
#include "storage/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/audit/chain_hash.h"
#include "tests/support/process.h"

namespace vigil::storage {
namespace {
using audit::kGenesisHash;
using audit::TimelineEventHash;

class SqliteStoreTest : public ::testing::Test {
 protected:
  SqliteStoreTest() {
    char dir[] = "/tmp/vigil-store-test-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/sub/vigil.db";
  }
  ~SqliteStoreTest() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Store> Open() {
    auto store = OpenSqliteStore(path_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  // Raw SQL on the file, the way an attacker or an old version would.
  void Sql(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }
  // One integer out of the file (the store's own connections are not reachable from here).
  int64_t SqlInt(const std::string& sql) {
    sqlite3* db = nullptr;
    int64_t value = -1;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      value = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return value;
  }
  v1::TimelineEvent Event(const std::string& incident, const std::string& summary) {
    v1::TimelineEvent e;
    e.set_incident_id(incident);
    e.set_time_unix_ms(1'700'000'000'000 + (++clock_));
    e.set_kind("note");
    e.set_actor("alice");
    e.set_summary(summary);
    e.set_details_json("{}");
    return e;
  }

  std::string dir_, path_;
  int clock_ = 0;
};

v1::AgentInfo Agent(const std::string& id, int64_t first, int64_t last) {
  v1::AgentInfo a;
  a.set_agent_id(id);
  a.set_hostname("host-" + id);
  a.set_first_seen_unix_ms(first);
  a.set_last_seen_unix_ms(last);
  a.set_state(v1::CONNECTED);
  a.set_cpu_usage_ratio(0.5);
  (*a.mutable_labels())["role"] = "api";
  a.set_last_sequence(7);
  return a;
}

TEST_F(SqliteStoreTest, MigratesAnEmptyFileToTheCurrentSchema) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto agents = store->ListAgents();
  ASSERT_TRUE(agents.ok());
  EXPECT_TRUE(agents->empty());
  sqlite3* db = nullptr;
  sqlite3_open(path_.c_str(), &db);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), kSqliteSchemaVersion);
  sqlite3_finalize(st);
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, MigratesAVersionOneRegistryKeepingItsAgents) {
  std::filesystem::create_directories(dir_ + "/sub");
  v1::AgentInfo old = Agent("db-1", 1111, 2222);
  std::string blob = old.SerializeAsString();
  // The schema as version 1 shipped it, with one agent in it.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_exec(
      db,
      "CREATE TABLE agents (agent_id TEXT PRIMARY KEY, first_seen_unix_ms INTEGER NOT NULL,"
      " last_seen_unix_ms INTEGER NOT NULL, info BLOB NOT NULL); PRAGMA user_version=1;",
      nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO agents VALUES('db-1', 1111, 2222, ?1)", -1, &st, nullptr);
  sqlite3_bind_blob(st, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);

  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto agents = store->ListAgents();
  ASSERT_TRUE(agents.ok());
  ASSERT_EQ(agents->size(), 1u);
  EXPECT_EQ((*agents)[0].first_seen_unix_ms(), 1111);
  EXPECT_EQ((*agents)[0].labels().at("role"), "api");
  // The tables of version 2 work.
  EXPECT_TRUE(store->AppendEvent(Event("inc-1", "first")).ok());
}

v1::Notification Outbox(const std::string& receiver, const std::string& incident,
                        const std::string& kind) {
  v1::Notification n;
  n.set_receiver(receiver);
  n.set_incident_id(incident);
  n.set_kind(kind);
  n.set_severity(v1::SEV2);
  n.set_time_unix_ms(1'767'225'600'000);
  return n;
}

TEST_F(SqliteStoreTest, TheLogIsCheckpointedAndItsHealthReported) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LogHealth().checkpoints, 0u);
  // About 8 MiB of events: past the 4 MiB at which the checkpointer starts a pass.
  const std::string details = absl::StrCat("{\"text\":\"", std::string(1000, 'x'), "\"}");
  for (int b = 0; b < 16; ++b) {
    WriteBatch batch;
    for (int i = 0; i < 500; ++i) {
      v1::TimelineEvent e = Event("inc-1", "a note");
      e.set_details_json(details);
      batch.Append(std::move(e));
    }
    ASSERT_TRUE(store->Commit(std::move(batch)).ok());
  }
  EXPECT_GT(store->LogHealth().log_bytes, 0);
  ASSERT_TRUE(testing::WaitUntil([&] { return store->LogHealth().checkpoints > 0; },
                                 absl::Seconds(10), absl::Milliseconds(10)));
  EXPECT_EQ(store->LogHealth().checkpoint_failures, 0u);
  auto head = store->ChainHead();
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->first, 16u * 500u);
}

TEST_F(SqliteStoreTest, OutboxRowsCommitWithTheBatchAndStayPendingUntilMarked) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  WriteBatch batch;
  batch.Append(Event("inc-1", "opened"));
  batch.Notify(Outbox("am", "inc-1", "opened"));
  batch.Notify(Outbox("hook", "inc-1", "opened"));
  batch.Notify(Outbox("hook", "inc-1", "acknowledged"));
  ASSERT_TRUE(store->Commit(batch).ok());
  auto counts = store->CountPendingNotifications();
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(*counts, (std::map<std::string, int64_t>{{"am", 1}, {"hook", 2}}));
  auto hook = store->PendingNotifications("hook", 10);
  ASSERT_TRUE(hook.ok()) << hook.status();
  ASSERT_EQ(hook->size(), 2u);
  EXPECT_EQ((*hook)[0].kind(), "opened");
  EXPECT_EQ((*hook)[1].kind(), "acknowledged");
  EXPECT_GT((*hook)[0].id(), 0u);
  EXPECT_LT((*hook)[0].id(), (*hook)[1].id());
  EXPECT_EQ(store->PendingNotifications("hook", 1)->size(), 1u);

  ASSERT_TRUE(store->RecordNotificationFailure((*hook)[0].id(), "connection refused").ok());
  ASSERT_TRUE(store->MarkNotificationDelivered((*hook)[1].id(), 1'767'225'601'000).ok());
  EXPECT_TRUE(absl::IsNotFound(store->MarkNotificationDelivered(999, 1)));
  EXPECT_TRUE(absl::IsNotFound(store->RecordNotificationFailure(999, "x")));

  // A restart finds what is pending, as it was left.
  store.reset();
  store = Open();
  ASSERT_NE(store, nullptr);
  hook = store->PendingNotifications("hook", 10);
  ASSERT_TRUE(hook.ok());
  ASSERT_EQ(hook->size(), 1u);
  EXPECT_EQ((*hook)[0].kind(), "opened");
  EXPECT_EQ((*hook)[0].attempts(), 1);
  EXPECT_EQ((*hook)[0].last_error(), "connection refused");
  EXPECT_EQ(store->CountPendingNotifications()->at("hook"), 1);
  // Marking twice keeps it delivered (and is no error).
  EXPECT_TRUE(store->MarkNotificationDelivered((*hook)[0].id(), 5).ok());
  EXPECT_TRUE(store->MarkNotificationDelivered((*hook)[0].id(), 6).ok());
  EXPECT_EQ(store->CountPendingNotifications()->count("hook"), 0u);
}

// Delivered rows are pruned a week after delivery, by later deliveries; pending ones never are,
// and ids are never handed out again.
TEST_F(SqliteStoreTest, DeliveredOutboxRowsArePrunedAWeekLater) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  WriteBatch batch;
  batch.Append(Event("inc-1", "opened"));
  batch.Notify(Outbox("hook", "inc-1", "opened"));
  batch.Notify(Outbox("hook", "inc-1", "acknowledged"));
  batch.Notify(Outbox("hook", "inc-1", "resolved"));
  ASSERT_TRUE(store->Commit(batch).ok());
  auto pending = store->PendingNotifications("hook", 10);
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 3u);
  const int64_t day = 24 * 3600 * 1000;
  const int64_t t0 = 1'767'225'600'000;
  ASSERT_TRUE(store->MarkNotificationDelivered((*pending)[0].id(), t0).ok());
  // Six days later the first delivered row is still there.
  ASSERT_TRUE(store->MarkNotificationDelivered((*pending)[1].id(), t0 + 6 * day).ok());
  EXPECT_EQ(SqlInt("SELECT COUNT(*) FROM notifications"), 3);
  // Eight days later it is gone; the second (two days old) and the pending one stay.
  WriteBatch later;
  later.Append(Event("inc-2", "opened"));
  later.Notify(Outbox("hook", "inc-2", "opened"));
  ASSERT_TRUE(store->Commit(later).ok());
  pending = store->PendingNotifications("hook", 10);
  ASSERT_EQ(pending->size(), 2u);
  ASSERT_TRUE(store->MarkNotificationDelivered((*pending)[1].id(), t0 + 8 * day).ok());
  EXPECT_EQ(SqlInt("SELECT COUNT(*) FROM notifications"), 3);
  EXPECT_EQ(
      SqlInt(absl::StrCat("SELECT COUNT(*) FROM notifications WHERE id = ", (*pending)[0].id())),
      1);
  EXPECT_EQ(store->CountPendingNotifications()->at("hook"), 1);
  // A new row after the prune gets a fresh id, above every earlier one.
  WriteBatch again;
  again.Append(Event("inc-3", "opened"));
  again.Notify(Outbox("hook", "inc-3", "opened"));
  ASSERT_TRUE(store->Commit(again).ok());
  EXPECT_EQ(SqlInt("SELECT MAX(id) FROM notifications"), 5);
}

TEST_F(SqliteStoreTest, AFailedBatchLeavesNoOutboxRow) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  // The proposal insert fails (a row that violates NOT NULL is impossible through the API, so
  // the table is taken away underneath): the whole batch, outbox row included, rolls back.
  Sql("DROP TABLE proposals;");
  WriteBatch batch;
  batch.Append(Event("inc-1", "opened"));
  batch.Notify(Outbox("am", "inc-1", "opened"));
  v1::ActionProposal proposal;
  proposal.set_id("p-1");
  batch.Save(proposal);
  EXPECT_FALSE(store->Commit(batch).ok());
  EXPECT_TRUE(store->CountPendingNotifications()->empty());
  EXPECT_TRUE(store->ListEvents("", 0, 0)->empty());
}

TEST_F(SqliteStoreTest, MigratesAVersionTwoDatabaseKeepingItsUsers) {
  std::filesystem::create_directories(dir_ + "/sub");
  // The users table as version 2 shipped it, with one user in it.
  Sql("CREATE TABLE agents (agent_id TEXT PRIMARY KEY, first_seen_unix_ms INTEGER NOT NULL,"
      " last_seen_unix_ms INTEGER NOT NULL, info BLOB NOT NULL);"
      "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL,"
      " token_hash TEXT NOT NULL UNIQUE, created_unix_ms INTEGER NOT NULL);"
      "INSERT INTO users VALUES('alice', 'admin', 'abc', 1234);");
  // The other version 2 tables, so that only the users migration runs.
  Sql("CREATE TABLE incidents (id TEXT PRIMARY KEY, state INTEGER NOT NULL,"
      " opened_unix_ms INTEGER NOT NULL, body BLOB NOT NULL);"
      "CREATE INDEX incidents_by_state ON incidents(state, opened_unix_ms);"
      "CREATE TABLE alerts (id TEXT PRIMARY KEY, state INTEGER NOT NULL,"
      " incident_id TEXT NOT NULL, body BLOB NOT NULL);"
      "CREATE TABLE timeline (seq INTEGER PRIMARY KEY, incident_id TEXT NOT NULL,"
      " time_unix_ms INTEGER NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,"
      " summary TEXT NOT NULL, details_json TEXT NOT NULL, prev_hash TEXT NOT NULL,"
      " hash TEXT NOT NULL);"
      "CREATE TABLE chain_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,"
      " hash TEXT NOT NULL);"
      "CREATE TABLE proposals (id TEXT PRIMARY KEY, incident_id TEXT NOT NULL,"
      " proposed_unix_ms INTEGER NOT NULL, body BLOB NOT NULL);"
      "PRAGMA user_version=2;");
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto alice = store->FindUserByTokenHash("abc");
  ASSERT_TRUE(alice.ok() && alice->has_value()) << alice.status();
  EXPECT_EQ((*alice)->name, "alice");
  EXPECT_EQ((*alice)->created_unix_ms, 1234);
  // An upgraded user's token never expires, and the user is enabled and never rotated.
  EXPECT_EQ((*alice)->expires_unix_ms, 0);
  EXPECT_EQ((*alice)->disabled_unix_ms, 0);
  EXPECT_EQ((*alice)->rotated_unix_ms, 0);
  auto version = store->UsersVersion();
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_TRUE(store->SetUserDisabled("alice", 99).ok());
  EXPECT_GT(*store->UsersVersion(), *version);
}

TEST_F(SqliteStoreTest, UsersAreDisabledRotatedListedAndEveryChangeMovesTheVersion) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const int64_t v0 = *store->UsersVersion();
  ASSERT_TRUE(store
                  ->AddUser({.name = "bob",
                             .role = "viewer",
                             .token_hash = "h1",
                             .created_unix_ms = 10,
                             .expires_unix_ms = 500})
                  .ok());
  ASSERT_TRUE(store->AddUser({"alice", "admin", "h2", 20}).ok());
  const int64_t v1 = *store->UsersVersion();
  EXPECT_GT(v1, v0);

  auto users = store->ListUsers();
  ASSERT_TRUE(users.ok()) << users.status();
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].name, "alice");  // by name
  EXPECT_EQ((*users)[1].expires_unix_ms, 500);

  ASSERT_TRUE(store->SetUserDisabled("bob", 30).ok());
  EXPECT_EQ((*store->FindUserByName("bob"))->disabled_unix_ms, 30);
  const int64_t v2 = *store->UsersVersion();
  EXPECT_GT(v2, v1);

  ASSERT_TRUE(store->ReplaceUserToken("bob", "h3", 900, 40).ok());
  EXPECT_FALSE(store->FindUserByTokenHash("h1")->has_value());  // the old token matches nobody
  auto bob = *store->FindUserByTokenHash("h3");
  ASSERT_TRUE(bob.has_value());
  EXPECT_EQ(bob->expires_unix_ms, 900);
  EXPECT_EQ(bob->rotated_unix_ms, 40);
  EXPECT_EQ(bob->disabled_unix_ms, 30);  // rotation does not enable
  EXPECT_GT(*store->UsersVersion(), v2);

  absl::Status unknown = store->SetUserDisabled("carol", 1);
  EXPECT_TRUE(absl::IsNotFound(unknown)) << unknown;
  EXPECT_EQ(unknown.message(), "no user named 'carol'");
  EXPECT_TRUE(absl::IsNotFound(store->ReplaceUserToken("carol", "h4", 0, 1)));

  // A change made by another process (here a raw connection, as sqlite3 would) moves it too.
  const int64_t before = *store->UsersVersion();
  Sql("UPDATE users SET role = 'responder' WHERE name = 'bob';");
  EXPECT_GT(*store->UsersVersion(), before);
  const int64_t after_update = *store->UsersVersion();
  Sql("DELETE FROM users WHERE name = 'bob';");
  EXPECT_GT(*store->UsersVersion(), after_update);
}

TEST_F(SqliteStoreTest, RefusesANewerSchemaAndNonDatabases) {
  std::filesystem::create_directories(dir_ + "/sub");
  Sql("PRAGMA user_version=99;");
  auto newer = OpenSqliteStore(path_);
  ASSERT_FALSE(newer.ok());
  EXPECT_TRUE(absl::StrContains(newer.status().message(), path_)) << newer.status();
  EXPECT_TRUE(absl::StrContains(newer.status().message(), "99")) << newer.status();

  const std::string junk = dir_ + "/junk.db";
  std::ofstream(junk) << "this is not a database, it is a text file written by mistake\n"
                      << std::string(4096, 'x');
  auto not_db = OpenSqliteStore(junk);
  ASSERT_FALSE(not_db.ok());
  EXPECT_TRUE(absl::StrContains(not_db.status().message(), junk)) << not_db.status();
}

TEST_F(SqliteStoreTest, UpsertKeepsFirstSeenAndDropsLiveFields) {
  {
    auto store = Open();
    ASSERT_TRUE(store->UpsertAgents({Agent("web-1", 1000, 1000), Agent("web-2", 1500, 1500)}).ok());
    ASSERT_TRUE(store->UpsertAgents({Agent("web-1", 9999, 5000)}).ok());
  }
  auto store = Open();  // survives close and reopen
  auto agents = store->ListAgents();
  ASSERT_TRUE(agents.ok());
  ASSERT_EQ(agents->size(), 2u);
  EXPECT_EQ((*agents)[0].first_seen_unix_ms(), 1000);
  EXPECT_EQ((*agents)[0].last_seen_unix_ms(), 5000);
  EXPECT_EQ((*agents)[0].last_sequence(), 7u);
  EXPECT_EQ((*agents)[0].state(), v1::DISCONNECTED);
  EXPECT_EQ((*agents)[0].cpu_usage_ratio(), 0);
}

TEST_F(SqliteStoreTest, IncidentsByStateNewestFirstAlertsProposalsUsers) {
  auto store = Open();
  for (int i = 1; i <= 3; ++i) {
    v1::Incident incident;
    incident.set_id(absl::StrCat("inc-", i));
    incident.set_opened_unix_ms(i * 1000);
    incident.set_state(i == 2 ? v1::INCIDENT_RESOLVED : v1::OPEN);
    ASSERT_TRUE(store->SaveIncident(incident).ok());
  }
  auto active = store->ListIncidents("active");
  ASSERT_TRUE(active.ok());
  ASSERT_EQ(active->size(), 2u);
  EXPECT_EQ((*active)[0].id(), "inc-3");
  EXPECT_EQ(store->ListIncidents("resolved")->size(), 1u);
  EXPECT_EQ(store->ListIncidents("all")->size(), 3u);
  EXPECT_FALSE(store->ListIncidents("sleeping").ok());
  EXPECT_FALSE(store->GetIncident("inc-9")->has_value());

  v1::Alert alert;
  alert.set_id("a1");
  alert.set_incident_id("inc-3");
  alert.set_state(v1::FIRING);
  ASSERT_TRUE(store->SaveAlert(alert).ok());
  alert.set_state(v1::RESOLVED);
  ASSERT_TRUE(store->SaveAlert(alert).ok());
  EXPECT_EQ(store->ListAlerts(false)->size(), 0u);
  EXPECT_EQ(store->ListAlerts(true)->size(), 1u);
  EXPECT_EQ(store->ListIncidentAlerts("inc-3")->size(), 1u);

  v1::ActionProposal proposal;
  proposal.set_id("p1");
  proposal.set_incident_id("inc-3");
  proposal.set_action("reload_nginx");
  ASSERT_TRUE(store->SaveProposal(proposal).ok());
  EXPECT_EQ((*store->GetProposal("p1"))->action(), "reload_nginx");
  EXPECT_EQ(store->ListProposals("inc-3")->size(), 1u);

  ASSERT_TRUE(store->AddUser({"alice", "commander", "abc", 1}).ok());
  EXPECT_EQ(store->AddUser({"alice", "viewer", "def", 2}).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ((*store->FindUserByTokenHash("abc"))->role, "commander");
  EXPECT_FALSE(store->FindUserByTokenHash("zzz")->has_value());
}

TEST_F(SqliteStoreTest, ChainVerifiesAndListsByIncident) {
  auto store = Open();
  v1::Incident incident;
  incident.set_id("inc-1");
  for (int i = 0; i < 5; ++i) {
    auto e =
        store->AppendEvent(Event(i % 2 ? "inc-1" : "inc-2", absl::StrCat("event ", i)), &incident);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->seq(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(e->hash(), TimelineEventHash(*e));
  }
  EXPECT_EQ((*store->GetIncident("inc-1"))->last_event_seq(), 5);
  EXPECT_EQ(store->ListEvents("inc-1", 0, 100)->size(), 2u);
  auto after = store->ListEvents("", 3, 1);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].seq(), 4u);
  auto verdict = store->VerifyChain();
  ASSERT_TRUE(verdict.ok());
  EXPECT_TRUE(verdict->ok()) << verdict->problem();
  EXPECT_EQ(verdict->events_checked(), 5u);
}

class TamperTest : public SqliteStoreTest {
 protected:
  void SetUp() override {
    auto store = Open();
    for (int i = 1; i <= 6; ++i)
      ASSERT_TRUE(store->AppendEvent(Event("inc-1", absl::StrCat("e", i))).ok());
  }
  v1::VerifyAuditResponse Verify() { return *Open()->VerifyChain(); }
};

TEST_F(TamperTest, EditedSummaryIsNamed) {
  Sql("UPDATE timeline SET summary = 'nothing happened' WHERE seq = 3");
  auto v = Verify();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_seq(), 3u);
  EXPECT_TRUE(absl::StrContains(v.problem(), "changed")) << v.problem();
}

TEST_F(TamperTest, RecomputedHashStillBreaksTheNextLink) {
  // An editor who recomputes the edited row's own hash breaks the link to the next one.
  v1::TimelineEvent e = Event("inc-1", "e3");
  Sql("UPDATE timeline SET summary = 'forged' WHERE seq = 3");
  auto rows = Open()->ListEvents("", 2, 1);
  v1::TimelineEvent forged = (*rows)[0];
  Sql(absl::StrCat("UPDATE timeline SET hash = '", TimelineEventHash(forged), "' WHERE seq = 3"));
  auto v = Verify();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_seq(), 4u);
}

TEST_F(TamperTest, DeletedMiddleRowIsNamed) {
  Sql("DELETE FROM timeline WHERE seq = 4");
  auto v = Verify();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_seq(), 4u);
  EXPECT_TRUE(absl::StrContains(v.problem(), "removed")) << v.problem();
}

TEST_F(TamperTest, DeletedLastRowIsNamed) {
  Sql("DELETE FROM timeline WHERE seq = 6");
  auto v = Verify();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_seq(), 6u);
}

TEST_F(TamperTest, SwappedRowsAreNamed) {
  Sql("UPDATE timeline SET seq = 100 WHERE seq = 2; UPDATE timeline SET seq = 2 WHERE seq = 5;"
      "UPDATE timeline SET seq = 5 WHERE seq = 100;");
  auto v = Verify();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.first_bad_seq(), 2u);
}

TEST_F(SqliteStoreTest, ConcurrentAppendsMakeOneValidChain) {
  auto store = Open();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        v1::TimelineEvent e;
        e.set_incident_id(absl::StrCat("inc-", t));
        e.set_kind("note");
        e.set_summary(absl::StrCat(t, "/", i));
        ASSERT_TRUE(store->AppendEvent(e).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto v = store->VerifyChain();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << v->problem();
  EXPECT_EQ(v->events_checked(), 200u);
}

TEST(TimelineHash, FieldsAndBoundariesMatter) {
  v1::TimelineEvent a;
  a.set_seq(1);
  a.set_prev_hash(std::string(kGenesisHash));
  a.set_kind("ab");
  a.set_actor("c");
  v1::TimelineEvent b = a;
  b.set_kind("a");
  b.set_actor("bc");
  EXPECT_NE(TimelineEventHash(a), TimelineEventHash(b));
  EXPECT_EQ(TimelineEventHash(a), TimelineEventHash(a));
  EXPECT_EQ(TimelineEventHash(a).size(), 64u);
  v1::TimelineEvent c = a;
  c.set_time_unix_ms(1);
  EXPECT_NE(TimelineEventHash(a), TimelineEventHash(c));
  c = a;
  c.set_details_json("{}");
  EXPECT_NE(TimelineEventHash(a), TimelineEventHash(c));
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

// Restores the process umask when the test ends.
class Umask {
 public:
  explicit Umask(mode_t mask) : old_(umask(mask)) {}
  ~Umask() { umask(old_); }

 private:
  mode_t old_;
};

TEST_F(SqliteStoreTest, DatabaseWalAndShmAreOwnerOnlyWhateverTheUmask) {
  Umask permissive(022);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->AppendEvent(Event("inc-1", "password=hunter2")).ok());
  for (const std::string& file : {path_, path_ + "-wal", path_ + "-shm"}) {
    ASSERT_TRUE(std::filesystem::exists(file)) << file;
    EXPECT_EQ(ModeOf(file) & 077, 0u) << file << " mode " << std::oct << ModeOf(file);
  }
}

TEST_F(SqliteStoreTest, ReadableDatabaseFromAnOlderVersionIsTightened) {
  Umask permissive(022);
  std::filesystem::create_directories(dir_ + "/sub");
  Sql("CREATE TABLE t(x);");  // made by sqlite3 itself: 0644
  ASSERT_NE(ModeOf(path_) & 044, 0u);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(ModeOf(path_), 0600u);
  ASSERT_TRUE(store->AppendEvent(Event("inc-1", "first")).ok());
  EXPECT_EQ(ModeOf(path_ + "-wal") & 077, 0u);
}

}  // namespace
}  // namespace vigil::storage

namespace vigil::storage {
namespace {

TEST_F(SqliteStoreTest, ABatchLandsWholeWithItsEventsInOrder) {
  auto store = Open();
  WriteBatch batch;
  v1::Incident incident;
  incident.set_id("INC-0001");
  incident.set_state(v1::OPEN);
  v1::Alert alert;
  alert.set_id("a1");
  alert.set_incident_id("INC-0001");
  batch.Save(alert);
  batch.Append(Event("INC-0001", "one"), &incident);
  batch.Append(Event("INC-0001", "two"), &incident);
  auto stored = store->Commit(batch);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 2u);
  EXPECT_EQ((*stored)[0].seq(), 1u);
  EXPECT_EQ((*stored)[1].seq(), 2u);
  EXPECT_EQ((*stored)[1].prev_hash(), (*stored)[0].hash());
  EXPECT_EQ((*store->GetIncident("INC-0001"))->last_event_seq(), 2);
  EXPECT_EQ(store->ListIncidentAlerts("INC-0001")->size(), 1u);
  EXPECT_TRUE(store->VerifyChain()->ok());
}

TEST_F(SqliteStoreTest, ALargeBatchHashedAheadChainsAsEventByEvent) {
  // 1,000 events in one batch have their content hashes computed on a helper thread
  // (kHashAheadMinEvents); each stored hash must be the one the event's own fields give, and the
  // chain must verify across a small batch before and after.
  auto store = Open();
  ASSERT_TRUE(store->AppendEvent(Event("INC-0001", "before")).ok());
  WriteBatch batch;
  for (int i = 0; i < 1000; ++i) {
    batch.Append(Event(i % 2 == 0 ? "INC-0001" : "INC-0002", absl::StrCat("event ", i)));
  }
  auto stored = store->Commit(std::move(batch));
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 1000u);
  std::string prev = (*stored)[0].prev_hash();
  for (size_t i = 0; i < stored->size(); ++i) {
    const v1::TimelineEvent& e = (*stored)[i];
    ASSERT_EQ(e.seq(), i + 2);
    ASSERT_EQ(e.summary(), absl::StrCat("event ", i));
    ASSERT_EQ(e.prev_hash(), prev);
    ASSERT_EQ(e.hash(), audit::TimelineEventHash(e)) << "event " << e.seq();
    prev = e.hash();
  }
  ASSERT_TRUE(store->AppendEvent(Event("INC-0002", "after")).ok());
  auto verdict = store->VerifyChain();
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->DebugString();
  EXPECT_EQ(verdict->events_checked(), 1002u);
}

TEST_F(SqliteStoreTest, EventsInsertedManyToAStatementReadBackAsCommitted) {
  // 165 events: a statement of 128 rows, two of 16 and five of one (sqlite_store.cc,
  // kManyEvents, kSomeEvents), an incident saved among them. Every column of every row must be
  // the event Commit returned.
  auto store = Open();
  ASSERT_TRUE(store->AppendEvent(Event("INC-0001", "before")).ok());
  v1::Incident incident;
  incident.set_id("INC-0002");
  incident.set_state(v1::OPEN);
  WriteBatch batch;
  for (int i = 0; i < 165; ++i) {
    v1::TimelineEvent e = Event(i % 3 == 0 ? "INC-0002" : "INC-0001", absl::StrCat("event ", i));
    e.set_kind(absl::StrCat("kind-", i));
    e.set_actor(absl::StrCat("actor-", i));
    e.set_details_json(absl::StrCat(R"({"i":)", i, "}"));
    batch.Append(std::move(e), i == 40 ? &incident : nullptr);
  }
  auto stored = store->Commit(std::move(batch));
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 165u);
  auto read = store->ListEvents("", 1, 1000);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 165u);
  for (size_t i = 0; i < read->size(); ++i) {
    const v1::TimelineEvent& want = (*stored)[i];
    const v1::TimelineEvent& got = (*read)[i];
    EXPECT_EQ(got.seq(), i + 2);
    EXPECT_EQ(got.incident_id(), want.incident_id()) << "seq " << got.seq();
    EXPECT_EQ(got.time_unix_ms(), want.time_unix_ms()) << "seq " << got.seq();
    EXPECT_EQ(got.kind(), absl::StrCat("kind-", i));
    EXPECT_EQ(got.actor(), absl::StrCat("actor-", i));
    EXPECT_EQ(got.summary(), absl::StrCat("event ", i));
    EXPECT_EQ(got.details_json(), absl::StrCat(R"({"i":)", i, "}"));
    EXPECT_EQ(got.prev_hash(), want.prev_hash()) << "seq " << got.seq();
    EXPECT_EQ(got.hash(), want.hash()) << "seq " << got.seq();
  }
  auto saved = store->GetIncident("INC-0002");
  ASSERT_TRUE(saved.ok() && saved->has_value());
  EXPECT_EQ((*saved)->last_event_seq(), 42);  // the 41st event of the batch, after "before"
  auto verdict = store->VerifyChain();
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->DebugString();
  EXPECT_EQ(verdict->events_checked(), 166u);
}

TEST_F(SqliteStoreTest, ABatchRefusedInTheMiddleOfAManyRowInsertLeavesNothing) {
  // A row the database refuses, inside a statement of 128 rows, of 16, or of one (a batch of 150:
  // 128 + 16 + 6): the whole batch rolls back, the head stays where it was, and the next batch
  // chains on from it.
  auto store = Open();
  auto first = store->AppendEvent(Event("INC-0001", "kept"));
  ASSERT_TRUE(first.ok()) << first.status();
  Sql("CREATE TRIGGER refuse_poison BEFORE INSERT ON timeline WHEN NEW.summary = 'poison' "
      "BEGIN SELECT RAISE(ABORT, 'poison refused'); END;");
  for (const int poisoned : {100, 140, 147}) {
    WriteBatch batch;
    for (int i = 0; i < 150; ++i) {
      batch.Append(Event("INC-0001", i == poisoned ? "poison" : absl::StrCat("event ", i)));
    }
    auto refused = store->Commit(std::move(batch));
    ASSERT_FALSE(refused.ok()) << "poisoned " << poisoned;
    EXPECT_TRUE(absl::StrContains(refused.status().message(), "poison refused"))
        << refused.status();
    EXPECT_EQ(SqlInt("SELECT COUNT(*) FROM timeline"), 1) << "poisoned " << poisoned;
    EXPECT_EQ(SqlInt("SELECT seq FROM chain_head"), 1) << "poisoned " << poisoned;
  }
  Sql("DROP TRIGGER refuse_poison;");
  auto next = store->AppendEvent(Event("INC-0001", "after"));
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->seq(), 2u);
  EXPECT_EQ(next->prev_hash(), first->hash());
  auto verdict = store->VerifyChain();
  ASSERT_TRUE(verdict.ok()) << verdict.status();
  EXPECT_TRUE(verdict->ok()) << verdict->DebugString();
}

TEST_F(SqliteStoreTest, ADamagedFileIsRefusedAtTheIntegrityCheck) {
  {
    auto store = Open();
    for (int i = 0; i < 400; ++i) {
      ASSERT_TRUE(store->AppendEvent(Event("INC-0001", std::string(200, 'x'))).ok());
    }
    ASSERT_TRUE(store->Maintain().ok());  // everything in the main file
    EXPECT_TRUE(store->CheckIntegrity().ok());
  }
  // Garbage over a page in the middle of the file, as a bad disk or a stray write would leave.
  const auto size = std::filesystem::file_size(path_);
  ASSERT_GT(size, 16u * 4096);
  {
    std::fstream file(path_, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(8 * 4096));  // page 9, header and cells
    const std::string garbage(2000, '\x5a');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto store = OpenSqliteStore(path_);
  absl::Status checked = store.ok() ? (*store)->CheckIntegrity() : store.status();
  EXPECT_FALSE(checked.ok());
  EXPECT_EQ(checked.code(), absl::StatusCode::kDataLoss) << checked;
  EXPECT_TRUE(absl::StrContains(checked.message(), path_)) << checked;
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(checked.message()), "page")) << checked;
}

}  // namespace
}  // namespace vigil::storage
