// WatchHub behind a real in-process gRPC server, over a real SqliteStore in a temp dir. A test
// feed plays the timeline writer: it appends to the store, then calls the listeners in seq
// order under its lock, as IncidentManager does.
#include "controller/api/watch_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/wire_metadata.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil::controller {
namespace {

using ::testing::HasSubstr;

class TestFeed {
 public:
  explicit TestFeed(storage::Store* store) : store_(store) {}

  WatchHub::Feed feed() {
    return WatchHub::Feed{.subscribe =
                              [this](WatchHub::Listener listener) {
                                absl::MutexLock lock(&mu_);
                                listeners_[next_] = std::move(listener);
                                return next_++;
                              },
                          .unsubscribe =
                              [this](int id) {
                                absl::MutexLock lock(&mu_);
                                listeners_.erase(id);
                              }};
  }

  // Appends one event of `incident` and tells the listeners; returns its seq.
  uint64_t Append(const std::string& incident, size_t summary_bytes = 40) {
    v1::TimelineEvent event;
    event.set_incident_id(incident);
    event.set_kind("note");
    event.set_actor("test");
    event.set_summary(std::string(summary_bytes, 'x'));
    absl::StatusOr<v1::TimelineEvent> stored = store_->AppendEvent(event);
    EXPECT_TRUE(stored.ok()) << stored.status();
    absl::MutexLock lock(&mu_);
    for (const auto& [id, listener] : listeners_) {
      listener(*stored);
    }
    return stored->seq();
  }

  size_t listeners() {
    absl::MutexLock lock(&mu_);
    return listeners_.size();
  }

 private:
  storage::Store* store_;
  absl::Mutex mu_;
  std::map<int, WatchHub::Listener> listeners_ ABSL_GUARDED_BY(mu_);
  int next_ ABSL_GUARDED_BY(mu_) = 1;
};

// Only Watch, as ControlServiceImpl serves it (minus authorization).
class WatchOnlyService final : public v1::ControlService::CallbackService {
 public:
  explicit WatchOnlyService(WatchHub* hub) : hub_(hub) {}
  grpc::ServerWriteReactor<v1::TimelineEvent>* Watch(grpc::CallbackServerContext* context,
                                                     const v1::WatchRequest* request) override {
    const auto& metadata = context->client_metadata();
    auto live = metadata.find(std::string(kWatchLiveOnlyKey));
    return hub_->Open(context, *request, live != metadata.end() && live->second == "1");
  }

 private:
  WatchHub* hub_;
};

std::optional<uint64_t> SeqIn(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                              absl::string_view key) {
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  uint64_t seq = 0;
  if (it == metadata.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &seq)) {
    return std::nullopt;
  }
  return seq;
}

class WatchHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::OpenSqliteStore(dir_.File("vigil.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    feed_ = std::make_unique<TestFeed>(store_.get());
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      server_->Wait();
    }
    service_.reset();
    hub_.reset();
  }

  void Serve(WatchHub::Options options) {
    hub_ = std::make_unique<WatchHub>(store_.get(), feed_->feed(), options);
    service_ = std::make_unique<WatchOnlyService>(hub_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::ControlService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void Fill(int n, const std::string& incident = "INC-0001", size_t summary_bytes = 40) {
    for (int i = 0; i < n; ++i) {
      feed_->Append(incident, summary_bytes);
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<TestFeed> feed_;
  std::unique_ptr<WatchHub> hub_;
  std::unique_ptr<WatchOnlyService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::ControlService::Stub> stub_;
};

TEST_F(WatchHubTest, PagesThroughEveryStoredEventAndHandsOverToLiveOnesWithoutGapOrRepeat) {
  constexpr uint64_t kStored = 25'000;
  constexpr uint64_t kLive = 3'000;
  Fill(kStored);
  Serve(WatchHub::Options{});

  grpc::ClientContext context;
  v1::WatchRequest request;
  request.set_after_seq(0);
  auto reader = stub_->Watch(&context, request);
  // The writer keeps appending while the backlog is paged and after the hand-over.
  std::thread writer([&] {
    for (uint64_t i = 0; i < kLive; ++i) {
      feed_->Append("INC-0002");
      if (i % 100 == 0) {
        absl::SleepFor(absl::Milliseconds(2));
      }
    }
  });
  v1::TimelineEvent event;
  uint64_t expected = 1;
  while (expected <= kStored + kLive && reader->Read(&event)) {
    ASSERT_EQ(event.seq(), expected) << "events arrive once each, in seq order";
    ++expected;
  }
  writer.join();
  EXPECT_EQ(expected, kStored + kLive + 1);
  EXPECT_EQ(SeqIn(context.GetServerInitialMetadata(), kWatchStartSeqKey), 0u);
  EXPECT_EQ(hub_->stats().open, 1u);
  EXPECT_EQ(hub_->stats().ended_behind, 0u);

  context.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
  ASSERT_TRUE(testing::WaitUntil([&] { return hub_->stats().open == 0; }, absl::Seconds(5)));
  EXPECT_EQ(hub_->stats().buffered_bytes, 0u);
  EXPECT_EQ(feed_->listeners(), 0u) << "the stream unsubscribed when it ended";
}

TEST_F(WatchHubTest, OneIncidentFromAnOldSeqWhileOthersInterleave) {
  // One event in three is INC-0001's, so pages of the filtered query skip over the others.
  for (int i = 0; i < 6'000; ++i) {
    feed_->Append(i % 3 == 0 ? "INC-0001" : "INC-0002");
  }
  Serve(WatchHub::Options{.page_size = 500});
  grpc::ClientContext context;
  v1::WatchRequest request;
  request.set_after_seq(100);
  request.set_incident_id("INC-0001");
  auto reader = stub_->Watch(&context, request);
  std::vector<uint64_t> expected;
  for (uint64_t seq = 1; seq <= 6'000; ++seq) {
    if ((seq - 1) % 3 == 0 && seq > 100) expected.push_back(seq);
  }
  std::vector<uint64_t> live_expected;
  std::thread writer([&] {
    for (int i = 0; i < 3'000; ++i) {
      const uint64_t seq = feed_->Append(i % 2 == 0 ? "INC-0001" : "INC-0003");
      if (i % 2 == 0) {
        live_expected.push_back(seq);
      }
    }
  });
  writer.join();
  expected.insert(expected.end(), live_expected.begin(), live_expected.end());
  v1::TimelineEvent event;
  std::vector<uint64_t> got;
  while (got.size() < expected.size() && reader->Read(&event)) {
    EXPECT_EQ(event.incident_id(), "INC-0001");
    got.push_back(event.seq());
  }
  EXPECT_EQ(got, expected);
  context.TryCancel();
  reader->Finish();
}

TEST_F(WatchHubTest, SlowWatcherIsToldWhereToResumeAndResumingFromThereLeavesNoGap) {
  // A backlog bigger than the transport's windows, and a client that reads nothing: the backfill
  // stalls, so live events pile up past the tiny per-watcher cap.
  constexpr int kStored = 3'000;
  Fill(kStored, "INC-0001", 500);
  Serve(WatchHub::Options{.page_size = 200, .max_watcher_bytes = 4096});
  auto slow_context = std::make_unique<grpc::ClientContext>();
  v1::WatchRequest request;
  auto slow = stub_->Watch(slow_context.get(), request);
  slow->WaitForInitialMetadata();
  absl::SleepFor(absl::Milliseconds(300));  // let the backfill fill the windows
  int live = 0;
  while (hub_->stats().ended_behind == 0 && live < 20'000) {
    feed_->Append("INC-0001", 500);
    ++live;
  }
  ASSERT_EQ(hub_->stats().ended_behind, 1u) << "after " << live << " live events";

  // The slow client now reads what was sent: a gap-free prefix, then the resume point.
  v1::TimelineEvent event;
  uint64_t last = 0;
  while (slow->Read(&event)) {
    ASSERT_EQ(event.seq(), last + 1);
    last = event.seq();
  }
  grpc::Status status = slow->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("fell behind"));
  EXPECT_THAT(status.error_message(), HasSubstr(absl::StrCat("resume after seq ", last)));
  EXPECT_EQ(SeqIn(slow_context->GetServerTrailingMetadata(), kResumeAfterSeqKey), last);
  EXPECT_GT(last, 0u);
  EXPECT_LT(last, static_cast<uint64_t>(kStored + live));

  // A new stream from the named point yields the rest, then what is appended next.
  grpc::ClientContext context;
  request.set_after_seq(last);
  auto reader = stub_->Watch(&context, request);
  const uint64_t total = kStored + live + 5;
  std::thread writer([&] { Fill(5, "INC-0001", 500); });
  while (last < total && reader->Read(&event)) {
    ASSERT_EQ(event.seq(), last + 1);
    last = event.seq();
  }
  writer.join();
  EXPECT_EQ(last, total);
  context.TryCancel();
  reader->Finish();
  ASSERT_TRUE(testing::WaitUntil([&] { return hub_->stats().open == 0; }, absl::Seconds(5)));
  EXPECT_EQ(hub_->stats().buffered_bytes, 0u);
}

TEST_F(WatchHubTest, FullTotalBudgetEndsTheStreamWithItsResumePoint) {
  Fill(10);
  Serve(WatchHub::Options{.max_total_bytes = 100});
  grpc::ClientContext context;
  v1::WatchRequest request;
  request.set_after_seq(4);
  auto reader = stub_->Watch(&context, request);
  v1::TimelineEvent event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("watch memory (100 bytes for all watchers)"));
  EXPECT_EQ(SeqIn(context.GetServerTrailingMetadata(), kResumeAfterSeqKey), 4u);
  EXPECT_EQ(hub_->stats().ended_behind, 1u);
}

TEST_F(WatchHubTest, LiveOnlyStartsAtTheHeadAndSaysWhere) {
  Fill(3'000);
  Serve(WatchHub::Options{});
  grpc::ClientContext context;
  context.AddMetadata(std::string(kWatchLiveOnlyKey), "1");
  v1::WatchRequest request;
  auto reader = stub_->Watch(&context, request);
  reader->WaitForInitialMetadata();
  EXPECT_EQ(SeqIn(context.GetServerInitialMetadata(), kWatchStartSeqKey), 3'000u);
  Fill(3);
  v1::TimelineEvent event;
  for (uint64_t seq = 3'001; seq <= 3'003; ++seq) {
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.seq(), seq);
  }
  context.TryCancel();
  reader->Finish();
}

TEST_F(WatchHubTest, APageReadDuringTheHandOverAddsNothingTwice) {
  Fill(3'000);
  Serve(WatchHub::Options{});
  // The first page is read only after live events have already taken over.
  absl::Notification resume;
  hub_->PauseReaderForTest(&resume);
  grpc::ClientContext context;
  v1::WatchRequest request;
  request.set_after_seq(3'000);
  auto reader = stub_->Watch(&context, request);
  reader->WaitForInitialMetadata();
  Fill(3);
  v1::TimelineEvent event;
  for (uint64_t seq = 3'001; seq <= 3'003; ++seq) {
    ASSERT_TRUE(reader->Read(&event));
    EXPECT_EQ(event.seq(), seq);
  }
  resume.Notify();  // the page after 3,000 comes back holding 3,001..3,003
  absl::SleepFor(absl::Milliseconds(100));
  Fill(1);
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.seq(), 3'004u);
  context.TryCancel();
  reader->Finish();
}

TEST_F(WatchHubTest, TimelineHeadIsTheLastSeq) {
  EXPECT_EQ(TimelineHead(*store_).value(), 0u);
  Fill(1);
  EXPECT_EQ(TimelineHead(*store_).value(), 1u);
  Fill(2'500);
  EXPECT_EQ(TimelineHead(*store_).value(), 2'501u);
}

TEST_F(WatchHubTest, OverlongIncidentIdIsRefused) {
  Serve(WatchHub::Options{});
  grpc::ClientContext context;
  v1::WatchRequest request;
  request.set_incident_id(std::string(300, 'a'));
  auto reader = stub_->Watch(&context, request);
  v1::TimelineEvent event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("incident_id is 300 bytes"));
}

TEST_F(WatchHubTest, ResumePointBeyondAnySequenceIsRefused) {
  Fill(3);
  Serve(WatchHub::Options{});
  grpc::ClientContext context;
  v1::WatchRequest request;
  request.set_after_seq(std::numeric_limits<uint64_t>::max());
  auto reader = stub_->Watch(&context, request);
  v1::TimelineEvent event;
  EXPECT_FALSE(reader->Read(&event)) << "a wrapped resume point would replay from the start";
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("after_seq 18446744073709551615 is beyond"));
}

}  // namespace
}  // namespace vigil::controller
