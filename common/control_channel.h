// The gRPC channel arguments of the `vigil` CLI's connection to its controller, shared by the CLI
// and the load generator's probe (which must measure what a commander would see). Thread-safe.
#pragma once

#include <grpcpp/support/channel_arguments.h>

namespace vigil {

grpc::ChannelArguments ControlChannelArguments();

}  // namespace vigil
