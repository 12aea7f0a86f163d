// ContentHashAhead gives the same hashes as TimelineContentHash whoever computes them (the helper
// ahead, or the caller when it catches up), in every interleaving, and lets go of the events it
// has not reached when dropped early.
#include "common/audit/content_hash_ahead.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace vigil::audit {
namespace {

std::vector<v1::TimelineEvent> Events(int n) {
  std::vector<v1::TimelineEvent> events(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    v1::TimelineEvent& e = events[static_cast<size_t>(i)];
    e.set_incident_id(absl::StrCat("INC-", i % 7));
    e.set_time_unix_ms(1'700'000'000'000 + i);
    e.set_kind("alert_fired");
    e.set_actor(absl::StrCat("api-", i));
    e.set_summary(absl::StrCat("DiskSpaceWarning on api-", i));
    e.set_details_json(absl::StrCat(R"({"n":)", i, "}"));
  }
  return events;
}

std::vector<const v1::TimelineEvent*> Pointers(const std::vector<v1::TimelineEvent>& events) {
  std::vector<const v1::TimelineEvent*> out;
  out.reserve(events.size());
  for (const v1::TimelineEvent& e : events) {
    out.push_back(&e);
  }
  return out;
}

TEST(ContentHashAhead, EveryHashIsTheContentHashWhenTakenAsFastAsPossible) {
  std::vector<v1::TimelineEvent> events = Events(5000);
  ContentHashAhead ahead(Pointers(events));
  for (size_t i = 0; i < events.size(); ++i) {
    const std::string taken = ahead.Take(i);
    ASSERT_EQ(taken, TimelineContentHash(events[i])) << "event " << i;
    // The caller changes what it took, as the store does: the helper must be done with it.
    events[i].set_summary("changed after its hash was taken");
    events[i].set_seq(i + 1);
  }
}

TEST(ContentHashAhead, TheHelperHashesAheadOfASlowCaller) {
  std::vector<v1::TimelineEvent> events = Events(400);
  ContentHashAhead ahead(Pointers(events));
  // A caller slower than a digest (the store inserts a row meanwhile): once the helper thread
  // runs, it gets ahead. Waiting for its first hash (bounded) keeps a busy host's late scheduling
  // from turning this into a test of the scheduler.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ahead.hashed_ahead() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (size_t i = 0; i < events.size(); ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    ASSERT_EQ(ahead.Take(i), TimelineContentHash(events[i])) << "event " << i;
  }
  EXPECT_GT(ahead.hashed_ahead(), 0u);
  EXPECT_LE(ahead.hashed_ahead(), events.size());
}

TEST(ContentHashAhead, DroppedEarlyItIsDoneWithTheEventsBeforeTheyGo) {
  auto events = std::make_unique<std::vector<v1::TimelineEvent>>(Events(20000));
  auto ahead = std::make_unique<ContentHashAhead>(Pointers(*events));
  for (size_t i = 0; i < 10; ++i) {
    ASSERT_EQ(ahead->Take(i), TimelineContentHash((*events)[i]));
  }
  // As when a commit fails after ten events: the helper stops after the event it is on and is
  // joined, so the events can go at once (a helper still reading them is a use after free under
  // the sanitizer build).
  ahead.reset();
  events.reset();
}

TEST(ContentHashAhead, NoEventsIsNothingToDo) {
  ContentHashAhead ahead({});
  EXPECT_EQ(ahead.hashed_ahead(), 0u);
}

}  // namespace
}  // namespace vigil::audit
