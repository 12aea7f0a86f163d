#include "controller/api/watch_hub.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/wire_metadata.h"
#include "controller/api/incident_pages.h"

namespace vigil::controller {
namespace {

constexpr uint64_t kEverything = std::numeric_limits<uint64_t>::max();

size_t Footprint(const v1::TimelineEvent& e) { return e.ByteSizeLong() + sizeof(e); }

WatchHub::Options Sane(WatchHub::Options options) {
  options.page_size = std::max(options.page_size, 1);
  return options;
}

}  // namespace

absl::StatusOr<uint64_t> TimelineHead(storage::Store& store) {
  // `lo` is a seq known to exist (0 at first), `hi` one with nothing after it; every probe
  // either finds an event after `mid` (its seq is a new `lo`) or shows nothing lies beyond.
  uint64_t lo = 0;
  uint64_t hi = 0;
  uint64_t step = 1024;
  while (true) {
    const uint64_t probe = step >= kMaxSeq - lo ? kMaxSeq : lo + step;
    ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> after, store.ListEvents("", probe, 1));
    if (after.empty()) {
      hi = probe;
      break;
    }
    lo = after.front().seq();
    step *= 2;
  }
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    ASSIGN_OR_RETURN(std::vector<v1::TimelineEvent> after, store.ListEvents("", mid, 1));
    if (after.empty()) {
      hi = mid;
    } else {
      lo = after.front().seq();
    }
  }
  return lo;
}

// One Watch stream. Live events are subscribed to before the first store read, held back while
// the backlog is paged, and handed over once the store pages reach them: from then on the stream
// sends each live event it has not sent yet, so nothing is skipped or repeated. Owned by
// shared_ptrs (itself until OnDone, the listener, queued reads), so late callbacks are harmless.
class WatchHub::Stream final : public grpc::ServerWriteReactor<v1::TimelineEvent>,
                               public std::enable_shared_from_this<Stream> {
 public:
  Stream(WatchHub* hub, grpc::CallbackServerContext* context, const v1::WatchRequest& request,
         bool live_only)
      : hub_(hub),
        context_(context),
        filter_(request.incident_id()),
        live_only_(live_only),
        start_(live_only ? 0 : request.after_seq()) {}

  void Start(std::function<absl::Status()> admit) {
    self_ = shared_from_this();
    if (admit) {
      hub_->Post([stream = shared_from_this(), admit = std::move(admit)] {
        if (absl::Status allowed = admit(); !allowed.ok()) {
          absl::MutexLock lock(&stream->mu_);
          stream->FinishLocked(ToGrpcStatus(allowed));
          return;
        }
        stream->StartAdmitted();
      });
      return;
    }
    StartAdmitted();
  }

 private:
  void StartAdmitted() {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        return;  // cancelled while it was being admitted
      }
    }
    if (filter_.size() > kMaxIncidentIdBytes) {
      absl::MutexLock lock(&mu_);
      FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                absl::StrCat("incident_id is ", filter_.size(),
                                             " bytes; an incident id has at most ",
                                             kMaxIncidentIdBytes)));
      return;
    }
    if (!live_only_ && start_ > kMaxSeq) {
      absl::MutexLock lock(&mu_);
      FinishLocked(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("after_seq ", start_, " is beyond any event sequence (at most ", kMaxSeq,
                       ")")));
      return;
    }
    {
      // Before any store read: every event appended from here on reaches OnLive. Never after
      // OnDone (admission runs on the reader thread), or the listener would outlive the stream.
      absl::MutexLock lock(&subscription_mu_);
      if (done_) {
        return;
      }
      listener_ = hub_->feed_.subscribe(
          [stream = shared_from_this()](const v1::TimelineEvent& e) { stream->OnLive(e); });
      subscribed_ = true;
    }
    if (live_only_) {
      hub_->Post([stream = shared_from_this()] { stream->FindHead(); });
      return;
    }
    absl::MutexLock lock(&mu_);
    Begin(start_);
  }

 public:
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the watcher went away"));
      return;
    }
    last_sent_ = out_.front().seq();
    const size_t bytes = Footprint(out_.front());
    out_bytes_ -= bytes;
    if (page_events_ > 0) {
      --page_events_;
    } else {
      live_bytes_ -= bytes;
    }
    hub_->Release(bytes);
    out_.pop_front();
    if (behind_) {
      FinishBehind();
      return;
    }
    WriteNext();
    Continue();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the watcher went away"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&subscription_mu_);
      done_ = true;
      if (subscribed_) {
        hub_->feed_.unsubscribe(listener_);
      }
    }
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
      writing_ = false;  // every reaction has run
      DropBuffers();
    }
    hub_->open_.fetch_sub(1);
    std::shared_ptr<Stream> last = std::move(self_);  // may be the last owner: nothing after
  }

 private:
  enum class Phase { kStarting, kBackfill, kLive };

  // --- on the reader thread ---
  void FindHead() {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        return;
      }
    }
    absl::StatusOr<uint64_t> head = TimelineHead(*hub_->store_);
    absl::MutexLock lock(&mu_);
    if (!head.ok()) {
      FinishLocked(ToGrpcStatus(
          Annotate(head.status(), "watch: finding the head of the timeline")));
      return;
    }
    Begin(*head);
  }

  void ReadPage() {
    uint64_t from;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) {
        return;
      }
      from = covered_;
    }
    const int limit = hub_->options_.page_size;
    absl::StatusOr<std::vector<v1::TimelineEvent>> page =
        hub_->store_->ListEvents(filter_, from, limit);
    absl::MutexLock lock(&mu_);
    reading_ = false;
    // Live events may have reached the pages while this one was read (the hand-over is done,
    // and they hold everything this page has).
    if (finished_ || behind_ || phase_ != Phase::kBackfill) {
      return;
    }
    if (!page.ok()) {
      FinishLocked(ToGrpcStatus(
          Annotate(page.status(), absl::StrCat("watch: reading the timeline after seq ", from))));
      return;
    }
    size_t bytes = 0;
    for (const v1::TimelineEvent& e : *page) {
      bytes += Footprint(e);
    }
    if (!hub_->TryReserve(bytes)) {
      FallBehind(absl::StrCat("the controller's watch memory (", hub_->options_.max_total_bytes,
                              " bytes for all watchers) is full"));
      return;
    }
    out_bytes_ += bytes;
    page_events_ += page->size();  // out_ holds only page events during the backfill
    for (v1::TimelineEvent& e : *page) {
      last_queued_ = e.seq();
      out_.push_back(std::move(e));
    }
    covered_ = static_cast<int>(page->size()) < limit ? kEverything : last_queued_;
    WriteNext();
    Continue();
  }

  // --- on the timeline writer's thread; never blocks ---
  void OnLive(const v1::TimelineEvent& e) {
    if (!filter_.empty() && e.incident_id() != filter_) {
      return;
    }
    absl::MutexLock lock(&mu_);
    if (finished_ || behind_) {
      return;
    }
    const size_t bytes = Footprint(e);
    if (phase_ == Phase::kLive) {
      if (e.seq() <= last_queued_) {
        return;
      }
      if (!Reserve(bytes)) {
        return;
      }
      out_bytes_ += bytes;
      live_bytes_ += bytes;
      last_queued_ = e.seq();
      out_.push_back(e);
      WriteNext();
      return;
    }
    if (!held_.empty() && e.seq() <= held_.back().seq()) {
      return;
    }
    if (!Reserve(bytes)) {
      return;
    }
    held_bytes_ += bytes;
    live_bytes_ += bytes;
    held_.push_back(e);
    if (phase_ == Phase::kBackfill) {
      Continue();
    }
  }

  // --- under mu_ ---
  // The stream starts after `seq`: say so to the client, then page the store from there.
  void Begin(uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) {
      return;
    }
    last_sent_ = last_queued_ = covered_ = seq;
    context_->AddInitialMetadata(std::string(kWatchStartSeqKey), std::to_string(seq));
    StartSendInitialMetadata();
    phase_ = Phase::kBackfill;
    Continue();
  }

  // Backfill: hands over to the held live events once the store pages reach them (no event can
  // lie between), otherwise reads the next page when the current one is half sent.
  void Continue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (phase_ != Phase::kBackfill || finished_ || behind_) {
      return;
    }
    const bool reached = covered_ == kEverything ||
                         (!held_.empty() && held_.front().seq() <= covered_ + 1);
    if (reached) {
      for (v1::TimelineEvent& e : held_) {
        const size_t bytes = Footprint(e);
        held_bytes_ -= bytes;
        if (e.seq() <= last_queued_) {
          live_bytes_ -= bytes;
          hub_->Release(bytes);  // the store pages sent it already
          continue;
        }
        out_bytes_ += bytes;
        last_queued_ = e.seq();
        out_.push_back(std::move(e));
      }
      held_.clear();
      phase_ = Phase::kLive;
      WriteNext();
      return;
    }
    if (!reading_ && out_.size() <= static_cast<size_t>(hub_->options_.page_size) / 2) {
      reading_ = true;
      hub_->Post([stream = shared_from_this()] { stream->ReadPage(); });
    }
  }

  // Counts a live event against this watcher's cap and the total; on overflow the watcher has
  // fallen behind. Backfill pages are not held against the watcher (at most one page and a
  // half wait at a time) but count in the total.
  bool Reserve(size_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (live_bytes_ + bytes > hub_->options_.max_watcher_bytes) {
      FallBehind(absl::StrCat("more than ", hub_->options_.max_watcher_bytes,
                              " bytes of events were waiting for it"));
      return false;
    }
    if (!hub_->TryReserve(bytes)) {
      FallBehind(absl::StrCat("the controller's watch memory (", hub_->options_.max_total_bytes,
                              " bytes for all watchers) is full"));
      return false;
    }
    return true;
  }

  // Stops buffering and frees what waits; the stream ends once the write in flight is done.
  void FallBehind(std::string why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    hub_->ended_behind_.fetch_add(1);
    behind_ = true;
    behind_why_ = std::move(why);
    DropBuffers();
    if (!writing_) {
      FinishBehind();
    }
  }

  void FinishBehind() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) {
      return;
    }
    spdlog::warn("watch{}: the watcher fell behind ({}); ended after seq {}",
                 filter_.empty() ? "" : absl::StrCat(" of ", filter_), behind_why_, last_sent_);
    context_->AddTrailingMetadata(std::string(kResumeAfterSeqKey), std::to_string(last_sent_));
    FinishLocked(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("the watcher fell behind (", behind_why_, "); resume after seq ", last_sent_,
                     " (vigil watch --after ", last_sent_, ")")));
  }

  // Frees every buffered event except the one being written.
  void DropBuffers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t keep = 0;
    if (writing_ && !out_.empty()) {
      keep = Footprint(out_.front());
      out_.resize(1);
    } else {
      out_.clear();
    }
    hub_->Release(out_bytes_ - keep + held_bytes_);
    out_bytes_ = keep;
    const bool front_from_page = page_events_ > 0;
    page_events_ = keep > 0 && front_from_page ? 1 : 0;
    live_bytes_ = keep > 0 && !front_from_page ? keep : 0;
    held_.clear();
    held_bytes_ = 0;
  }

  void WriteNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || behind_ || out_.empty()) {
      return;
    }
    writing_ = true;
    StartWrite(&out_.front());
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!finished_) {
      finished_ = true;
      Finish(status);
    }
  }

  WatchHub* const hub_;
  grpc::CallbackServerContext* const context_;
  const std::string filter_;
  const bool live_only_;
  const uint64_t start_;
  std::shared_ptr<Stream> self_;  // from Start until OnDone
  // Taken before the feed's own lock, never while holding mu_.
  absl::Mutex subscription_mu_;
  int listener_ ABSL_GUARDED_BY(subscription_mu_) = 0;
  bool subscribed_ ABSL_GUARDED_BY(subscription_mu_) = false;
  bool done_ ABSL_GUARDED_BY(subscription_mu_) = false;  // OnDone ran

  absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kStarting;
  // Every matching stored event with seq <= covered_ is queued or was before the start;
  // kEverything once a short page showed the store had no more when it was read.
  uint64_t covered_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t last_sent_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<v1::TimelineEvent> out_ ABSL_GUARDED_BY(mu_);  // front is being written
  size_t out_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t page_events_ ABSL_GUARDED_BY(mu_) = 0;  // the first ones of out_ came from the store
  size_t live_bytes_ ABSL_GUARDED_BY(mu_) = 0;   // live events waiting: held_ and out_'s rest
  std::deque<v1::TimelineEvent> held_ ABSL_GUARDED_BY(mu_);  // live events during the backfill
  size_t held_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool behind_ ABSL_GUARDED_BY(mu_) = false;
  std::string behind_why_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

WatchHub::WatchHub(storage::Store* store, Feed feed, Options options)
    : store_(store), feed_(std::move(feed)), options_(Sane(options)) {
  reader_ = std::thread([this] { ReaderLoop(); });
}

WatchHub::~WatchHub() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  reader_.join();
}

grpc::ServerWriteReactor<v1::TimelineEvent>* WatchHub::Open(grpc::CallbackServerContext* context,
                                                            const v1::WatchRequest& request,
                                                            bool live_only,
                                                            std::function<absl::Status()> admit) {
  open_.fetch_add(1);
  auto stream = std::make_shared<Stream>(this, context, request, live_only);
  stream->Start(std::move(admit));
  return stream.get();
}

WatchHub::Stats WatchHub::stats() const {
  return Stats{.open = open_.load(),
               .ended_behind = ended_behind_.load(),
               .buffered_bytes = buffered_bytes_.load()};
}

void WatchHub::PauseReaderForTest(absl::Notification* resume) {
  Post([resume] { resume->WaitForNotification(); });
}

void WatchHub::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void WatchHub::ReaderLoop() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stopping_ || !tasks_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) {
        tasks_.clear();
        return;
      }
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

bool WatchHub::TryReserve(size_t bytes) {
  size_t current = buffered_bytes_.load();
  do {
    if (current + bytes > options_.max_total_bytes) {
      return false;
    }
  } while (!buffered_bytes_.compare_exchange_weak(current, current + bytes));
  return true;
}

void WatchHub::Release(size_t bytes) { buffered_bytes_.fetch_sub(bytes); }

}  // namespace vigil::controller
