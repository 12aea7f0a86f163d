#include "tests/support/hostile_agent.h"

#include <future>

namespace vigil::testing {

HostileAgent::HostileAgent(const std::string& target, const v1::Hello& hello) {
  stub_ =
      v1::AgentService::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  stream_ = stub_->Connect(&context_);
  v1::AgentMessage message;
  *message.mutable_hello() = hello;
  stream_->Write(message);
}

HostileAgent::~HostileAgent() {
  if (!finished_) {
    context_.TryCancel();
    stream_->Finish();
  }
}

bool HostileAgent::AwaitWelcome(absl::Duration timeout) {
  // Reads block; a helper thread bounds the wait and cancels on timeout.
  auto read = std::async(std::launch::async, [this] {
    v1::ControllerMessage message;
    while (stream_->Read(&message)) {
      if (message.has_welcome()) {
        return true;
      }
    }
    ended_ = true;
    return false;
  });
  if (read.wait_for(absl::ToChronoMilliseconds(timeout)) != std::future_status::ready) {
    context_.TryCancel();
    read.wait();
    return false;
  }
  return read.get();
}

bool HostileAgent::Send(const v1::AgentMessage& message) {
  return !ended_ && stream_->Write(message);
}

bool HostileAgent::SendBatch(const v1::TelemetryBatch& batch) {
  v1::AgentMessage message;
  *message.mutable_telemetry() = batch;
  return Send(message);
}

bool HostileAgent::AwaitAck(uint64_t sequence, absl::Duration timeout) {
  auto read = std::async(std::launch::async, [this, sequence] {
    v1::ControllerMessage message;
    while (stream_->Read(&message)) {
      if (message.has_ack() && message.ack().sequence() >= sequence) {
        return true;
      }
    }
    ended_ = true;
    return false;
  });
  if (read.wait_for(absl::ToChronoMilliseconds(timeout)) != std::future_status::ready) {
    context_.TryCancel();
    read.wait();
    return false;
  }
  return read.get();
}

grpc::Status HostileAgent::Finish(absl::Duration timeout) {
  auto drain = std::async(std::launch::async, [this] {
    v1::ControllerMessage message;
    while (stream_->Read(&message)) {
    }
  });
  if (drain.wait_for(absl::ToChronoMilliseconds(timeout)) != std::future_status::ready) {
    context_.TryCancel();
  }
  drain.wait();
  finished_ = true;
  return stream_->Finish();
}

std::string HostileAgent::Trailer(const std::string& key) const {
  const auto& trailers = context_.GetServerTrailingMetadata();
  auto it = trailers.find(key);
  return it == trailers.end() ? "" : std::string(it->second.data(), it->second.size());
}

}  // namespace vigil::testing
