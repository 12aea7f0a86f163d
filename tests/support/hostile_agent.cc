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

bool HostileAgent::ReadUntil(const std::function<bool(const v1::ControllerMessage&)>& wanted,
                             absl::Duration timeout) {
  // Reads block; a helper thread bounds the wait and cancels the stream on timeout.
  auto read = std::async(std::launch::async, [this, &wanted] {
    v1::ControllerMessage message;
    while (stream_->Read(&message)) {
      if (wanted(message)) {
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

bool HostileAgent::AwaitWelcome(absl::Duration timeout) {
  return ReadUntil([](const v1::ControllerMessage& m) { return m.has_welcome(); }, timeout);
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
  return ReadUntil(
      [sequence](const v1::ControllerMessage& m) {
        return m.has_ack() && m.ack().sequence() >= sequence;
      },
      timeout);
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
