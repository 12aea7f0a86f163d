// Fuzzes the ingest path (controller/ingest/fleet_state.h) as one agent stream would drive it.
// The input is a sequence of length-delimited vigil.v1.AgentMessage: a Hello connects the stream
// (a default Hello is used when the first message is not one, and a later Hello starts a new
// stream with a fresh dictionary), each TelemetryBatch is applied with the stream's series
// dictionary, Diagnostics are stored. The fleet is then read as the API would.
#include <google/protobuf/util/message_differencer.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "controller/ingest/fleet_state.h"
#include "tests/fuzz/delimited.h"
#include "tests/fuzz/fuzz_check.h"
#include "vigil/v1/agent_service.pb.h"
#include "vigil/v1/control_service.pb.h"

namespace {

using vigil::controller::FleetState;
using vigil::controller::SeriesState;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FleetState::Options options;
  options.max_series_per_agent = 1000;
  const vigil::controller::IngestLimits& limits = options.limits;
  FleetState fleet(options);
  absl::Time now = absl::FromUnixSeconds(1'795'000'000);  // late 2026
  uint64_t session = 0;
  std::string agent_id;
  std::vector<SeriesState*> dictionary;

  auto connect = [&](const vigil::v1::Hello& hello) {
    if (session != 0) {
      fleet.Disconnect(agent_id, session, now);
    }
    ++session;
    dictionary.clear();
    // As the agent service does: nothing reaches the fleet state unvalidated.
    if (vigil::controller::ValidateHello(hello, limits).ok() &&
        fleet.Connect(hello, "ipv4:127.0.0.1:40000", session, now).ok()) {
      agent_id = hello.agent_id();
    } else {
      agent_id.clear();
    }
  };

  bool first = true;
  vigil::fuzz::ForEachDelimited(data, size, 256, [&](const uint8_t* bytes, size_t n) {
    vigil::v1::AgentMessage message;
    if (!message.ParseFromArray(bytes, static_cast<int>(n))) {
      return;
    }
    now += absl::Seconds(1);
    if (first && !message.has_hello()) {
      vigil::v1::Hello hello;
      hello.set_agent_id("fuzz-1");
      hello.set_hostname("fuzz-1.example");
      connect(hello);
    }
    first = false;
    switch (message.body_case()) {
      case vigil::v1::AgentMessage::kHello:
        connect(message.hello());
        break;
      case vigil::v1::AgentMessage::kTelemetry:
        if (!agent_id.empty()) {
          const vigil::controller::StreamView view{.dictionary_size = dictionary.size(),
                                                   .last_sequence = fleet.LastSequence(agent_id)};
          if (vigil::controller::ValidateBatch(message.telemetry(), view, limits, now).ok()) {
            (void)fleet.Apply(agent_id, message.telemetry(), dictionary, now);
            FUZZ_CHECK(dictionary.size() <= limits.max_series_per_stream);
            FUZZ_CHECK(fleet.AgentBytesForTest(agent_id) <= limits.max_agent_bytes);
          }
        }
        break;
      case vigil::v1::AgentMessage::kDiagnostics:
        if (!agent_id.empty() &&
            vigil::controller::ValidateDiagnostics(message.diagnostics(), limits).ok()) {
          fleet.SetDiagnostics(agent_id, message.diagnostics());
        }
        break;
      default:
        if (!agent_id.empty()) {
          fleet.Touch(agent_id, now);
        }
        break;
    }
  });

  const std::vector<vigil::v1::AgentInfo> agents = fleet.ListAgents();
  for (const vigil::v1::AgentInfo& info : agents) {
    auto metrics = fleet.GetMetrics(info.agent_id(), "");
    FUZZ_CHECK(metrics.ok());
    (void)fleet.GetMetrics(info.agent_id(), "nginx_");
  }
  // What ListAgents sends (rows kept serialized) parses to the rows themselves.
  std::string listing;
  fleet.AppendListing(&listing);
  vigil::v1::ListAgentsResponse listed;
  FUZZ_CHECK(listed.ParseFromString(listing));
  FUZZ_CHECK(listed.agents_size() == static_cast<int>(agents.size()));
  for (int i = 0; i < listed.agents_size(); ++i) {
    FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(
        listed.agents(i), agents[static_cast<size_t>(i)]));
  }
  // A flush in turns, then one of everything: together they store each changed row once, and
  // only rows of agents the fleet lists.
  std::vector<vigil::v1::AgentInfo> stored = fleet.TakeDirty(1, 3);
  for (vigil::v1::AgentInfo& row : fleet.TakeDirty()) {
    stored.push_back(std::move(row));
  }
  FUZZ_CHECK(stored.size() <= agents.size());
  std::set<std::string> stored_ids;
  for (const vigil::v1::AgentInfo& row : stored) {
    FUZZ_CHECK(stored_ids.insert(row.agent_id()).second);
  }
  return 0;
}
