// The one explicit table of collectors the agent knows.
#include "agent/collector.h"
#include "agent/collectors/host_collector.h"
#include "agent/collectors/nginx_collector.h"
#include "agent/collectors/postgres_collector.h"
#include "agent/collectors/prometheus_collector.h"
#include "agent/collectors/redis_collector.h"

namespace vigil::agent {

void RegisterBuiltinCollectors(CollectorRegistry& registry) {
  registry.Register("host", NewHostCollector);
  registry.Register("nginx", NewNginxCollector);
  registry.Register("postgres", NewPostgresCollector);
  registry.Register("redis", NewRedisCollector);
  registry.Register("prometheus", NewPrometheusCollector);
}

}  // namespace vigil::agent
