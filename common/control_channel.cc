#include "common/control_channel.h"

#include <grpc/grpc.h>

namespace vigil {

grpc::ChannelArguments ControlChannelArguments() {
  grpc::ChannelArguments args;
  // Reconnect quickly after a controller restart (gRPC's default backoff grows to 120 s).
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: that one is the connect timeout.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 250);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5'000);
  // Detect a vanished controller under a quiet `vigil watch`; slower than the agents' pings,
  // which the controller already permits.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
  // Exports and audit bundles of long incidents run to tens of megabytes.
  args.SetMaxReceiveMessageSize(256 << 20);
  return args;
}

}  // namespace vigil
