// Stops long-running commands (watch, a slow call) when the user presses Ctrl-C or a test asks:
// Trigger() cancels the gRPC call in flight and wakes any backoff sleep. Thread-safe; Trigger()
// is not async-signal-safe, so main() calls it from a thread that waits for the signal.
#pragma once

#include <grpcpp/client_context.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace vigil::cli {

class Interrupt {
 public:
  // Marks the interrupt as triggered and cancels the call registered through Scope, if any.
  void Trigger();
  bool triggered() const;
  // Sleeps for `d`; returns false early when triggered.
  bool SleepFor(absl::Duration d);

  // Registers `context` for cancellation while the scope lives. A context registered after
  // Trigger() is cancelled at once. One scope at a time.
  class Scope {
   public:
    Scope(Interrupt* interrupt, grpc::ClientContext* context);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Interrupt* interrupt_;
  };

 private:
  mutable absl::Mutex mu_;
  bool triggered_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* active_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace vigil::cli
