// The one explicit table of collectors the agent knows.
#include "agent/collector.h"
#include "agent/collectors/host_collector.h"

namespace vigil::agent {

void RegisterBuiltinCollectors(CollectorRegistry& registry) {
  registry.Register("host", NewHostCollector);
}

}  // namespace vigil::agent
