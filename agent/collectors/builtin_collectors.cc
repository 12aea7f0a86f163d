// The one explicit table of collectors the agent knows.
#include "agent/collector.h"
#include "agent/collectors/app_log_collector.h"
#include "agent/collectors/host_collector.h"
#include "agent/collectors/http_json_collector.h"
#include "agent/collectors/http_probe_collector.h"
#include "agent/collectors/nginx_collector.h"
#include "agent/collectors/nginx_status_collector.h"
#include "agent/collectors/postgres_collector.h"
#include "agent/collectors/prometheus_collector.h"
#include "agent/collectors/redis_collector.h"

namespace vigil::agent {

void RegisterBuiltinCollectors(CollectorRegistry& registry) {
  registry.Register("app_log", NewAppLogCollector);
  registry.Register("host", NewHostCollector);
  registry.Register("nginx", NewNginxCollector);
  registry.Register("postgres", NewPostgresCollector);
  registry.Register("redis", NewRedisCollector);
  registry.Register("http_probe", NewHttpProbeCollector);
  registry.Register("nginx_status", NewNginxStatusCollector);
  registry.Register("http_json", NewHttpJsonCollector);
  registry.Register("prometheus", NewPrometheusCollector);
}

}  // namespace vigil::agent
