// A test agent that speaks the wire contract with whatever messages a test crafts: ids that wrap,
// labels of 256 KiB, NaN, clocks a day ahead, sequence 2^64-1. It lets integration tests check
// that the controller refuses each with a clear status and lives on. Test code only;
// thread-compatible (one test thread drives it).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "vigil/v1/agent_service.grpc.pb.h"

namespace vigil::testing {

class HostileAgent {
 public:
  // Opens a stream to `target` (HOST:PORT, plain text on loopback) and sends `hello`.
  HostileAgent(const std::string& target, const v1::Hello& hello);
  ~HostileAgent();

  // Waits for the Welcome; false when the stream ended first or nothing came in `timeout`.
  bool AwaitWelcome(absl::Duration timeout = absl::Seconds(5));
  // Sends one message; false when the stream is already broken.
  bool Send(const v1::AgentMessage& message);
  bool SendBatch(const v1::TelemetryBatch& batch);
  // Waits for an Ack of `sequence` (or a later one); false when the stream ended first.
  bool AwaitAck(uint64_t sequence, absl::Duration timeout = absl::Seconds(5));
  // Half-closes and waits for the controller to end the stream: its status. While the stream
  // stays open past `timeout`, cancels it and returns that.
  grpc::Status Finish(absl::Duration timeout = absl::Seconds(5));
  // Trailing metadata value of `key` after Finish; empty when absent.
  std::string Trailer(const std::string& key) const;

  // Reads until `wanted` accepts a message (true), the stream ends or `timeout` passes (false).
  bool ReadUntil(const std::function<bool(const v1::ControllerMessage&)>& wanted,
                 absl::Duration timeout);

 private:
  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_;
  bool finished_ = false;
  bool writes_done_ = false;
  bool ended_ = false;  // Read returned false
};

}  // namespace vigil::testing
