#include "common/agent_channel.h"

#include <grpc/grpc.h>

namespace vigil {

grpc::ChannelArguments AgentChannelArguments() {
  grpc::ChannelArguments args;
  // Keepalive must match the controller's policy (it permits pings every 5 s without data),
  // or the controller answers too_many_pings and drops the agent.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // No bandwidth-delay probing: it answers every message received with a PING, which for an
  // agent's few kilobytes a second doubled the packets on the wire (and the controller's
  // system calls per agent) to tune a window the stream never fills. The 64 KiB default
  // window stays; a spool resent after an outage still streams at window / round trip.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  // The channel's own reconnect attempts are what bring a stream back after a controller
  // restart (the client waits on them): keep them frequent, so the fleet is back within 2 s.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  // gRPC takes this as the connect timeout (20 s by default): a connect lost in a partition
  // must not hold the channel in CONNECTING that long.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2'000);
  args.SetMaxReceiveMessageSize(16 << 20);
  return args;
}

}  // namespace vigil
