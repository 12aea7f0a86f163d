// The notifier: delivers the outbox. One thread per receiver reads that receiver's pending
// notifications from the store, oldest first, sends each (payloads.h) through a Transport, and
// marks it delivered once the receiver answered 2xx. A refusal or an unreachable receiver holds
// the queue (order is kept: a resolve never overtakes its open) and is retried with jittered
// exponential backoff (backoff.h), for ever: nothing is dropped. The outbox is the store's, so a
// restart resends whatever was not marked delivered; a crash between the receiver's 2xx and the
// mark sends that one again, with the same Idempotency-Key (at least once; effectively once for
// receivers that honour the key). Open incidents are also re-posted to Alertmanager receivers
// every resend_interval, from the store's active incidents, and stop being re-posted once
// resolved. Counts for /metrics: pending per receiver, sent, failures. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/notify/backoff.h"
#include "controller/notify/notify_config.h"
#include "controller/notify/payloads.h"
#include "storage/store.h"

namespace vigil::controller {

// A receiver's URL as logs, metrics and messages show it: scheme, host and port only, since the
// path of a Slack or PagerDuty URL is itself a credential.
std::string UrlForLogs(absl::string_view url);

// Sends one request; the receiver's HTTP status, or an error when there was no answer.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual absl::StatusOr<int> Send(const OutgoingRequest& request, absl::Duration timeout) = 0;
};

// Transport over the project's HTTP client (common/http).
class HttpTransport final : public Transport {
 public:
  absl::StatusOr<int> Send(const OutgoingRequest& request, absl::Duration timeout) override;
};

class Notifier {
 public:
  struct Options {
    // Paging is urgent: after an outage the next attempt comes within half a minute.
    BackoffOptions backoff{.initial = absl::Seconds(1), .max = absl::Seconds(30)};
    int page = 100;  // pending rows read per pass
    // How often an idle receiver looks at the outbox without being woken.
    absl::Duration poll = absl::Seconds(1);
    // A receiver with this many pending is logged as backed up (once per crossing).
    int64_t backlog_warning = 10'000;
  };
  struct ReceiverStats {
    int64_t pending = 0;     // undelivered rows in the outbox, as last counted
    uint64_t sent = 0;       // notifications the receiver accepted (2xx), this process
    uint64_t failures = 0;   // attempts refused or not answered, this process
    uint64_t resends = 0;    // Alertmanager re-posts of open incidents that were accepted
    std::string last_error;  // empty while the receiver is up
  };

  Notifier(NotifyConfig config, storage::Store* store, Transport* transport, const Clock* clock,
           Options options);
  Notifier(NotifyConfig config, storage::Store* store, Transport* transport, const Clock* clock)
      : Notifier(std::move(config), store, transport, clock, Options()) {}
  ~Notifier();

  void Start();
  // Ends the threads; an attempt in flight finishes first (bounded by the receiver's timeout).
  void Stop();
  // New rows were committed: the receivers look now rather than at their next poll.
  void Wake();

  // Sends a test notification to `receiver` now, on its thread, outside the outbox. `done` gets
  // a one-line description of the receiver's 2xx answer, or NotFound for an unknown receiver
  // (naming the configured ones), or the receiver's refusal or failure.
  void Test(const std::string& receiver, std::function<void(absl::StatusOr<std::string>)> done);

  const NotifyConfig& config() const { return config_; }
  std::map<std::string, ReceiverStats> stats() const;
  // vigil_notifications_pending{receiver}, vigil_notifications_sent_total{receiver},
  // vigil_notification_failures_total{receiver} (Prometheus text format).
  void AppendMetrics(std::string* page) const;

 private:
  struct Worker;
  void Loop(Worker& worker);
  // Sends pending rows until one fails or none is left; the time of the next pass.
  absl::Time Deliver(Worker& worker);
  void Resend(Worker& worker);
  // Refreshes the pending gauge from the store (and warns once past backlog_warning).
  void CountPending(Worker& worker);
  void RunTests(Worker& worker);
  absl::StatusOr<int> SendOnce(const Receiver& receiver, const OutgoingRequest& request);

  const NotifyConfig config_;
  storage::Store* const store_;
  Transport* const transport_;
  const Clock* const clock_;
  const Options options_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> started_{false};
};

}  // namespace vigil::controller
