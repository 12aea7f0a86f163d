// `vigil watch` end to end in one process: the CLI's own code against the controller's WatchHub
// behind a real gRPC server, over a real SqliteStore. A test feed plays the timeline writer
// (append to the store, then tell the listeners in seq order) and appends faster than the
// backlog is paged, so live events pile up past the watcher's cap and the controller ends the
// stream as fallen behind; the CLI's output is held until then.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <ostream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "cli/cli.h"
#include "cli/interrupt.h"
#include "common/wire_metadata.h"
#include "controller/api/watch_hub.h"
#include "storage/sqlite/sqlite_store.h"
#include "tests/support/process.h"
#include "tests/support/proto_json.h"
#include "vigil/v1/control_service.grpc.pb.h"

namespace vigil {
namespace {

using controller::WatchHub;

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
  void Append(size_t summary_bytes) {
    v1::TimelineEvent event;
    event.set_incident_id("INC-0001");
    event.set_kind("note");
    event.set_actor("tester");
    event.set_summary(std::string(summary_bytes, 'x'));
    absl::StatusOr<v1::TimelineEvent> stored = store_->AppendEvent(event);
    ASSERT_TRUE(stored.ok()) << stored.status();
    absl::MutexLock lock(&mu_);
    for (const auto& [id, listener] : listeners_) {
      listener(*stored);
    }
  }

 private:
  storage::Store* store_;
  absl::Mutex mu_;
  std::map<int, WatchHub::Listener> listeners_ ABSL_GUARDED_BY(mu_);
  int next_ ABSL_GUARDED_BY(mu_) = 1;
};

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

// A thread-safe sink; with a gate, every write waits until Open().
class GatedBuf : public std::streambuf {
 public:
  explicit GatedBuf(bool open) : open_(open) {}
  void Open() {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  std::string str() const {
    absl::MutexLock lock(&mu_);
    return data_;
  }

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&open_));
    data_.append(s, static_cast<size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      char ch = static_cast<char>(c);
      xsputn(&ch, 1);
    }
    return c;
  }

 private:
  mutable absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_);
  std::string data_ ABSL_GUARDED_BY(mu_);
};

std::vector<uint64_t> PrintedSeqs(const std::string& out) {
  std::vector<uint64_t> seqs;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    v1::TimelineEvent event;
    seqs.push_back(testing::ParseJson(std::string(line), &event) ? event.seq() : 0);
  }
  return seqs;
}

TEST(WatchEndToEndTest, CliThatFellBehindResumesAndPrintsEveryEventOnceInOrder) {
  testing::TempDir dir;
  absl::StatusOr<std::unique_ptr<storage::Store>> store =
      storage::OpenSqliteStore(dir.File("vigil.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  TestFeed feed(store->get());
  constexpr int kStored = 5'000;
  for (int i = 0; i < kStored; ++i) {
    feed.Append(1'000);
  }
  WatchHub hub(store->get(), feed.feed(),
               WatchHub::Options{.page_size = 200, .max_watcher_bytes = 256 << 10});
  WatchOnlyService service(&hub);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);

  GatedBuf out_buf(/*open=*/false);
  GatedBuf err_buf(/*open=*/true);
  std::ostream out(&out_buf);
  std::ostream err(&err_buf);
  cli::Interrupt interrupt;
  int exit_code = -1;
  std::thread watch([&] {
    cli::CliContext context;
    context.interrupt = &interrupt;
    exit_code = cli::RunCli({absl::StrCat("--controller=127.0.0.1:", port), "--insecure", "-o",
                             "json", "watch", "--after", "0"},
                            out, err, context);
  });

  // Live events while the backlog is paged: more than the watcher may hold back.
  int live = 0;
  while (hub.stats().ended_behind == 0 && live < 40'000) {
    feed.Append(1'000);
    ++live;
  }
  ASSERT_GE(hub.stats().ended_behind, 1u)
      << "after " << live << " live events; " << hub.stats().buffered_bytes << " bytes buffered";
  out_buf.Open();
  uint64_t total = kStored + live;
  ASSERT_TRUE(testing::WaitUntil([&] { return PrintedSeqs(out_buf.str()).size() >= total; },
                                 absl::Seconds(60)))
      << PrintedSeqs(out_buf.str()).size() << " of " << total << "; " << err_buf.str();
  // And it is live again after the resume.
  for (int i = 0; i < 5; ++i) {
    feed.Append(100);
  }
  total += 5;
  ASSERT_TRUE(testing::WaitUntil([&] { return PrintedSeqs(out_buf.str()).size() >= total; },
                                 absl::Seconds(20)))
      << err_buf.str();
  interrupt.Trigger();
  watch.join();
  EXPECT_EQ(exit_code, 0);

  const std::vector<uint64_t> seqs = PrintedSeqs(out_buf.str());
  ASSERT_EQ(seqs.size(), total) << "each event printed once";
  for (uint64_t i = 0; i < total; ++i) {
    ASSERT_EQ(seqs[i], i + 1);
  }
  EXPECT_TRUE(absl::StrContains(err_buf.str(), "vigil: fell behind the controller's timeline"))
      << err_buf.str();
  EXPECT_FALSE(absl::StrContains(err_buf.str(), "lost connection")) << err_buf.str();

  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server->Wait();
  EXPECT_EQ(hub.stats().open, 0u);
  EXPECT_EQ(hub.stats().buffered_bytes, 0u);
}

}  // namespace
}  // namespace vigil
