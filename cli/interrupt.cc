#include "cli/interrupt.h"

namespace vigil::cli {

void Interrupt::Trigger() {
  absl::MutexLock lock(&mu_);
  triggered_ = true;
  if (active_ != nullptr) active_->TryCancel();
}

bool Interrupt::triggered() const {
  absl::MutexLock lock(&mu_);
  return triggered_;
}

bool Interrupt::SleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  return !mu_.AwaitWithTimeout(absl::Condition(&triggered_), d);
}

Interrupt::Scope::Scope(Interrupt* interrupt, grpc::ClientContext* context)
    : interrupt_(interrupt) {
  if (interrupt_ == nullptr) return;
  absl::MutexLock lock(&interrupt_->mu_);
  interrupt_->active_ = context;
  if (interrupt_->triggered_) context->TryCancel();
}

Interrupt::Scope::~Scope() {
  if (interrupt_ == nullptr) return;
  absl::MutexLock lock(&interrupt_->mu_);
  interrupt_->active_ = nullptr;
}

}  // namespace vigil::cli
