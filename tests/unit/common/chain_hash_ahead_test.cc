// ChainHashAhead gives the same hashes as linking event by event (TimelineEventHash of each event
// at its seq after the one before), whoever computes them (the helper ahead, or the caller when it
// catches up and takes over the rest of the chain), in every interleaving, and lets go of the
// events it has not reached when dropped early.
#include "common/audit/chain_hash_ahead.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace vigil::audit {
namespace {

constexpr uint64_t kFirstSeq = 41;
const char kHead[] = "5f2b9c0e4d7a81369e0b3c5d7f9a1b2c4e6f8091a3b5c7d9e1f20314253647a8";

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

// The chain as the store builds it one event at a time.
std::vector<std::string> ChainedOneByOne(std::vector<v1::TimelineEvent> events) {
  std::vector<std::string> hashes;
  std::string prev = kHead;
  for (size_t i = 0; i < events.size(); ++i) {
    v1::TimelineEvent& e = events[i];
    e.set_seq(kFirstSeq + i);
    e.set_chain_format(2);
    e.set_prev_hash(prev);
    prev = TimelineEventHash(e);
    hashes.push_back(prev);
  }
  return hashes;
}

std::vector<const v1::TimelineEvent*> Pointers(const std::vector<v1::TimelineEvent>& events) {
  std::vector<const v1::TimelineEvent*> out;
  out.reserve(events.size());
  for (const v1::TimelineEvent& e : events) {
    out.push_back(&e);
  }
  return out;
}

void WaitForTheHelpersFirstHash(const ChainHashAhead& ahead) {
  // Bounded: a busy host's late scheduling must not turn a test into one of the scheduler.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ahead.hashed_ahead() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Takes every hash in order, changing each event once its hash is taken (as the store does: the
// helper must be done with it), and checks each against the one-by-one chain.
void TakeAllAndCheck(ChainHashAhead& ahead, std::vector<v1::TimelineEvent>& events,
                     const std::vector<std::string>& expected, absl::Duration pause) {
  std::string prev = kHead;
  for (size_t i = 0; i < events.size(); ++i) {
    if (pause > absl::ZeroDuration()) {
      std::this_thread::sleep_for(absl::ToChronoMicroseconds(pause));
    }
    std::string hash = ahead.Take(i, prev);
    ASSERT_EQ(hash, expected[i]) << "event " << i;
    events[i].set_summary("changed after its hash was taken");
    events[i].set_seq(kFirstSeq + i);
    prev = std::move(hash);
  }
}

TEST(ChainHashAhead, EveryHashIsTheLinkedHashWhenTakenAsFastAsPossible) {
  std::vector<v1::TimelineEvent> events = Events(5000);
  const std::vector<std::string> expected = ChainedOneByOne(events);
  ChainHashAhead ahead(Pointers(events), kFirstSeq, kHead);
  TakeAllAndCheck(ahead, events, expected, absl::ZeroDuration());
}

TEST(ChainHashAhead, TheHelperHashesAheadOfASlowCaller) {
  std::vector<v1::TimelineEvent> events = Events(400);
  const std::vector<std::string> expected = ChainedOneByOne(events);
  ChainHashAhead ahead(Pointers(events), kFirstSeq, kHead);
  WaitForTheHelpersFirstHash(ahead);
  // A caller slower than a digest (the store inserts a row meanwhile): the helper keeps ahead.
  TakeAllAndCheck(ahead, events, expected, absl::Microseconds(50));
  EXPECT_GT(ahead.hashed_ahead(), 0u);
  EXPECT_LE(ahead.hashed_ahead(), events.size());
}

TEST(ChainHashAhead, ACallerThatCatchesUpGetsTheSameChain) {
  // The caller takes what is ready far faster than the helper links: it catches up, then waits
  // for the hash being made, or past its allowance computes the next event itself and the helper
  // links its next one to the caller's. After the helper's first hash or from the start, fast or
  // a little slower than a digest: in every run, the same chain.
  for (int run = 0; run < 60; ++run) {
    std::vector<v1::TimelineEvent> events = Events(2000);
    const std::vector<std::string> expected = ChainedOneByOne(events);
    ChainHashAhead ahead(Pointers(events), kFirstSeq, kHead);
    if (run % 2 == 0) {
      WaitForTheHelpersFirstHash(ahead);
    }
    TakeAllAndCheck(ahead, events, expected,
                    run % 3 == 2 ? absl::Microseconds(1) : absl::ZeroDuration());
    if (HasFatalFailure()) {
      FAIL() << "run " << run << " (" << ahead.hashed_ahead() << " hashed ahead)";
    }
  }
}

TEST(ChainHashAhead, ACallerThatNeverWaitsTakesTurnsWithTheHelper) {
  // No allowance: the caller computes whatever the helper has not started (the first events
  // above all, before the helper's thread runs) and the helper links on from the caller's hash,
  // in whatever mix the scheduler makes.
  for (int run = 0; run < 60; ++run) {
    std::vector<v1::TimelineEvent> events = Events(1000);
    const std::vector<std::string> expected = ChainedOneByOne(events);
    ChainHashAhead ahead(Pointers(events), kFirstSeq, kHead, std::chrono::microseconds(0));
    TakeAllAndCheck(ahead, events, expected,
                    run % 2 == 0 ? absl::ZeroDuration() : absl::Microseconds(2));
    if (HasFatalFailure()) {
      FAIL() << "run " << run << " (" << ahead.hashed_ahead() << " hashed ahead)";
    }
  }
}

TEST(ChainHashAhead, DroppedEarlyItIsDoneWithTheEventsBeforeTheyGo) {
  auto events = std::make_unique<std::vector<v1::TimelineEvent>>(Events(20000));
  const std::vector<std::string> expected = ChainedOneByOne(*events);
  auto ahead = std::make_unique<ChainHashAhead>(Pointers(*events), kFirstSeq, kHead);
  std::string prev = kHead;
  for (size_t i = 0; i < 10; ++i) {
    prev = ahead->Take(i, prev);
    ASSERT_EQ(prev, expected[i]);
  }
  // As when a commit fails after ten events: the helper stops after the event it is on and is
  // joined, so the events can go at once (a helper still reading them is a use after free under
  // the sanitizer build).
  ahead.reset();
  events.reset();
}

TEST(ChainHashAhead, NoEventsIsNothingToDo) {
  ChainHashAhead ahead({}, kFirstSeq, kHead);
  EXPECT_EQ(ahead.hashed_ahead(), 0u);
}

}  // namespace
}  // namespace vigil::audit
