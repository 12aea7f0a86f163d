// The gRPC channel arguments of an agent's stream to its controller, shared by vigil-agent and
// the load generator's simulated agents (which must behave like it). Thread-safe.
#pragma once

#include <grpcpp/support/channel_arguments.h>

namespace vigil {

grpc::ChannelArguments AgentChannelArguments();

}  // namespace vigil
