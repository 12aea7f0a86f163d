#include "controller/notify/notifier.h"

#include <spdlog/spdlog.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/http/http_client.h"
#include "controller/notify/router.h"

namespace vigil::controller {
namespace {

// Receivers' answers are short; a long one is cut in messages.
std::string Excerpt(absl::string_view body) {
  constexpr size_t kMax = 200;
  std::string out(body.substr(0, kMax));
  for (char& c : out) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  return body.size() > kMax ? out + "..." : out;
}

}  // namespace

std::string UrlForLogs(absl::string_view url) {
  const size_t scheme = url.find("://");
  const size_t path = url.find('/', scheme == absl::string_view::npos ? 0 : scheme + 3);
  if (path == absl::string_view::npos || path + 1 >= url.size()) {
    return std::string(url);
  }
  return absl::StrCat(url.substr(0, path), "/...");
}

absl::StatusOr<int> HttpTransport::Send(const OutgoingRequest& request, absl::Duration timeout) {
  http::HttpClientOptions options;
  options.connect_timeout = std::min(timeout, absl::Seconds(5));
  options.timeout = timeout;
  options.max_response_bytes = size_t{64} * 1024;
  options.headers = request.headers;
  absl::StatusOr<http::HttpClientResponse> response =
      http::HttpPost(request.url, request.body, request.content_type, options);
  if (!response.ok()) {
    return response.status();
  }
  if (response->status < 200 || response->status > 299) {
    return absl::UnavailableError(
        absl::StrCat(request.url, " answered ", response->status, ": ", Excerpt(response->body)));
  }
  return response->status;
}

struct Notifier::Worker {
  const Receiver* receiver;
  std::thread thread;
  std::mt19937_64 random{std::random_device{}()};
  int failures_in_a_row = 0;                      // worker thread
  absl::Time next_resend = absl::InfinitePast();  // worker thread
  bool backlog_warned = false;                    // worker thread

  mutable absl::Mutex mu;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool woken ABSL_GUARDED_BY(mu) = false;
  std::deque<std::function<void(absl::StatusOr<std::string>)>> tests ABSL_GUARDED_BY(mu);
  ReceiverStats stats ABSL_GUARDED_BY(mu);
};

Notifier::Notifier(NotifyConfig config, storage::Store* store, Transport* transport,
                   const Clock* clock, Options options)
    : config_(std::move(config)),
      store_(store),
      transport_(transport),
      clock_(clock),
      options_(options) {
  for (const Receiver& receiver : config_.receivers) {
    auto worker = std::make_unique<Worker>();
    worker->receiver = &receiver;
    workers_.push_back(std::move(worker));
  }
}

Notifier::~Notifier() { Stop(); }

void Notifier::Start() {
  if (started_.exchange(true)) {
    return;
  }
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->thread = std::thread([this, w] { Loop(*w); });
  }
}

void Notifier::Stop() {
  for (auto& worker : workers_) {
    absl::MutexLock lock(&worker->mu);
    worker->stopping = true;
  }
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) {
      worker->thread.join();
    }
    // Tests asked for after the thread ended are answered, not forgotten.
    std::deque<std::function<void(absl::StatusOr<std::string>)>> tests;
    {
      absl::MutexLock lock(&worker->mu);
      tests.swap(worker->tests);
    }
    for (auto& done : tests) {
      done(absl::UnavailableError("the controller is stopping"));
    }
  }
}

void Notifier::Wake() {
  for (auto& worker : workers_) {
    absl::MutexLock lock(&worker->mu);
    worker->woken = true;
  }
}

void Notifier::Test(const std::string& receiver,
                    std::function<void(absl::StatusOr<std::string>)> done) {
  for (auto& worker : workers_) {
    if (worker->receiver->name == receiver) {
      absl::MutexLock lock(&worker->mu);
      if (worker->stopping || !started_) {
        done(absl::UnavailableError("notifications are not running"));
        return;
      }
      // One test at a time per receiver is plenty; more would only queue pages.
      if (worker->tests.size() >= 4) {
        done(absl::ResourceExhaustedError(
            absl::StrCat("receiver '", receiver, "' already has tests waiting; try again")));
        return;
      }
      worker->tests.push_back(std::move(done));
      worker->woken = true;
      return;
    }
  }
  const std::vector<std::string> names = config_.Names();
  done(absl::NotFoundError(absl::StrCat(
      "no receiver named '", receiver, "' (configured: ",
      names.empty() ? "none; see notifications.receivers in the controller's settings file"
                    : absl::StrJoin(names, ", "),
      ")")));
}

absl::StatusOr<int> Notifier::SendOnce(const Receiver& receiver, const OutgoingRequest& request) {
  return transport_->Send(request, receiver.timeout);
}

void Notifier::Loop(Worker& worker) {
  // Retries and polls are paced in real time (the waits are real); the resend schedule follows
  // the injected clock, like every time a receiver sees.
  absl::Time next_pass = absl::InfinitePast();
  const bool alertmanager = worker.receiver->type == ReceiverType::kAlertmanager;
  while (true) {
    RunTests(worker);
    if (absl::Now() >= next_pass) {
      next_pass = Deliver(worker);
    } else {
      CountPending(worker);  // backing off: the gauge still follows new rows
    }
    if (alertmanager && clock_->Now() >= worker.next_resend) {
      Resend(worker);
      worker.next_resend = clock_->Now() + config_.resend_interval;
    }
    absl::MutexLock lock(&worker.mu);
    absl::Duration wait = std::min(next_pass - absl::Now(), options_.poll);
    if (alertmanager) {
      wait = std::min(wait, worker.next_resend - clock_->Now());
    }
    auto ready = [&worker]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker.mu) {
      return worker.stopping || worker.woken || !worker.tests.empty();
    };
    // Woken early by Wake, Test and Stop.
    worker.mu.AwaitWithTimeout(absl::Condition(&ready), std::max(wait, absl::ZeroDuration()));
    if (worker.stopping) {
      return;
    }
    if (worker.woken && worker.failures_in_a_row == 0) {
      next_pass = absl::InfinitePast();  // new rows; a failing receiver keeps its backoff
    }
    worker.woken = false;
  }
}

void Notifier::CountPending(Worker& worker) {
  absl::StatusOr<std::map<std::string, int64_t>> counts = store_->CountPendingNotifications();
  if (!counts.ok()) {
    return;
  }
  auto it = counts->find(worker.receiver->name);
  const int64_t n = it == counts->end() ? 0 : it->second;
  if (n >= options_.backlog_warning && !worker.backlog_warned) {
    spdlog::warn(
        "receiver '{}' has {} notifications waiting; they are kept and sent in order "
        "once it accepts them",
        worker.receiver->name, n);
  }
  worker.backlog_warned = n >= options_.backlog_warning;
  absl::MutexLock lock(&worker.mu);
  worker.stats.pending = n;
}

absl::Time Notifier::Deliver(Worker& worker) {
  const Receiver& receiver = *worker.receiver;
  auto fail = [&](const std::string& error) {
    ++worker.failures_in_a_row;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const absl::Duration delay =
        BackoffDelay(options_.backoff, worker.failures_in_a_row, unit(worker.random));
    bool first = false;
    {
      absl::MutexLock lock(&worker.mu);
      ++worker.stats.failures;
      first = worker.stats.last_error.empty();
      worker.stats.last_error = error;
    }
    if (first) {
      spdlog::warn("notifications to receiver '{}' fail: {}; retrying with backoff", receiver.name,
                   error);
    }
    return absl::Now() + delay;
  };
  while (true) {
    {
      absl::MutexLock lock(&worker.mu);
      if (worker.stopping) {
        return absl::InfinitePast();
      }
    }
    absl::StatusOr<std::vector<v1::Notification>> pending =
        store_->PendingNotifications(receiver.name, options_.page);
    if (!pending.ok()) {
      return fail(absl::StrCat("cannot read the outbox: ", pending.status().message()));
    }
    CountPending(worker);
    if (pending->empty()) {
      return absl::Now() + options_.poll;
    }
    for (const v1::Notification& n : *pending) {
      {
        absl::MutexLock lock(&worker.mu);
        if (worker.stopping) {
          return absl::InfinitePast();
        }
      }
      const OutgoingRequest request =
          BuildRequest(receiver, n, config_.external_url, clock_->Now());
      absl::StatusOr<int> sent = SendOnce(receiver, request);
      if (!sent.ok()) {
        const std::string error(sent.status().message());
        store_->RecordNotificationFailure(n.id(), error).IgnoreError();
        return fail(error);
      }
      if (absl::Status marked =
              store_->MarkNotificationDelivered(n.id(), absl::ToUnixMillis(clock_->Now()));
          !marked.ok()) {
        // Delivered but not marked: it goes again later, with the same idempotency key.
        return fail(absl::StrCat("delivered notification ", n.id(),
                                 " but cannot mark it: ", marked.message()));
      }
      bool recovered = false;
      {
        absl::MutexLock lock(&worker.mu);
        ++worker.stats.sent;
        worker.stats.pending = std::max<int64_t>(0, worker.stats.pending - 1);
        recovered = !worker.stats.last_error.empty();
        worker.stats.last_error.clear();
      }
      if (recovered) {
        spdlog::info("receiver '{}' accepts notifications again", receiver.name);
      }
      worker.failures_in_a_row = 0;
    }
  }
}

void Notifier::Resend(Worker& worker) {
  const Receiver& receiver = *worker.receiver;
  absl::StatusOr<std::vector<v1::Incident>> active = store_->ListIncidents("active");
  if (!active.ok()) {
    return;
  }
  std::vector<v1::Notification> open;
  for (const v1::Incident& incident : *active) {
    if (Wants(receiver, incident, "opened")) {
      open.push_back(MakeNotification(receiver.name, "firing", incident, nullptr));
    }
  }
  if (open.empty()) {
    return;
  }
  absl::StatusOr<int> sent =
      SendOnce(receiver, BuildAlertmanagerRequest(receiver, open, config_.external_url));
  absl::MutexLock lock(&worker.mu);
  if (sent.ok()) {
    ++worker.stats.resends;
  } else {
    ++worker.stats.failures;
  }
}

void Notifier::RunTests(Worker& worker) {
  while (true) {
    std::function<void(absl::StatusOr<std::string>)> done;
    {
      absl::MutexLock lock(&worker.mu);
      if (worker.tests.empty()) {
        return;
      }
      done = std::move(worker.tests.front());
      worker.tests.pop_front();
    }
    const Receiver& receiver = *worker.receiver;
    const absl::Time now = clock_->Now();
    v1::Incident incident;
    incident.set_id(absl::StrCat("vigil-test-", absl::ToUnixMillis(now)));
    incident.set_title("Vigil test notification");
    incident.set_severity(v1::SEV4);
    incident.set_opened_unix_ms(absl::ToUnixMillis(now));
    v1::Notification n = MakeNotification(receiver.name, "test", incident, nullptr);
    n.set_summary(absl::StrCat("a test of receiver '", receiver.name, "'"));
    n.set_time_unix_ms(absl::ToUnixMillis(now));
    const OutgoingRequest request = BuildRequest(receiver, n, config_.external_url, now);
    absl::StatusOr<int> sent = SendOnce(receiver, request);
    if (!sent.ok()) {
      done(absl::UnavailableError(
          absl::StrCat("receiver '", receiver.name, "': ", sent.status().message())));
    } else {
      done(absl::StrCat("receiver '", receiver.name, "' (",
                        receiver.type == ReceiverType::kAlertmanager ? "alertmanager" : "webhook",
                        ", ", UrlForLogs(request.url),
                        ") accepted the test notification with HTTP ", *sent));
    }
  }
}

std::map<std::string, Notifier::ReceiverStats> Notifier::stats() const {
  std::map<std::string, ReceiverStats> out;
  for (const auto& worker : workers_) {
    absl::MutexLock lock(&worker->mu);
    out[worker->receiver->name] = worker->stats;
  }
  return out;
}

void Notifier::AppendMetrics(std::string* page) const {
  const std::map<std::string, ReceiverStats> all = stats();
  auto family = [&](absl::string_view name, absl::string_view type, absl::string_view help,
                    auto value) {
    absl::StrAppend(page, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
    for (const auto& [receiver, s] : all) {
      absl::StrAppend(page, name, "{receiver=\"", receiver, "\"} ", value(s), "\n");
    }
  };
  family("vigil_notifications_pending", "gauge",
         "Notifications in the outbox not yet accepted by the receiver.",
         [](const ReceiverStats& s) { return s.pending; });
  family("vigil_notifications_sent_total", "counter",
         "Notifications the receiver accepted (2xx), since the controller started.",
         [](const ReceiverStats& s) { return s.sent; });
  family("vigil_notification_failures_total", "counter",
         "Delivery attempts refused or not answered, since the controller started.",
         [](const ReceiverStats& s) { return s.failures; });
}

}  // namespace vigil::controller
