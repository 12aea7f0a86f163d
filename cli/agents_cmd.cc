#include "cli/agents_cmd.h"

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"

namespace vigil::cli {
namespace {

int RunAgents(CommandEnv& env) {
  v1::ListAgentsResponse response;
  if (!env.Call("ListAgents", &v1::ControlService::StubInterface::ListAgents,
                v1::ListAgentsRequest(), &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  PrintAgentsTable(response, env.clock().Now(), env.out());
  return kExitOk;
}

struct MetricsOptions {
  std::string agent;
  std::string prefix;
};

int RunMetrics(CommandEnv& env, const MetricsOptions& options) {
  v1::GetMetricsRequest request;
  request.set_agent_id(options.agent);
  request.set_name_prefix(options.prefix);
  v1::GetMetricsResponse response;
  if (!env.Call("GetMetrics", &v1::ControlService::StubInterface::GetMetrics, request, &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  PrintMetrics(response, env.clock().Now(), env.out());
  return kExitOk;
}

int RunWhoAmI(CommandEnv& env) {
  v1::WhoAmIResponse response;
  if (!env.Call("WhoAmI", &v1::ControlService::StubInterface::WhoAmI, v1::WhoAmIRequest(),
                &response)) {
    return kExitFailed;
  }
  if (env.json()) return env.PrintJson(response);
  env.out() << OneLine(response.user()) << " ("
            << (response.role().empty() ? "-" : OneLine(response.role())) << ") at "
            << OneLine(env.connection.controller) << '\n';
  return kExitOk;
}

}  // namespace

void PrintAgentsTable(const v1::ListAgentsResponse& response, absl::Time now, std::ostream& out) {
  // LOST: telemetry batches the controller will never have (dropped by the agent or missing).
  Table table({"ID", "HOST", "ROLE", "STATE", "LAST SEEN", "CPU", "MEM", "DISK", "LOST"});
  for (const v1::AgentInfo& agent : response.agents()) {
    auto role = agent.labels().find("role");
    table.AddRow({agent.agent_id(), agent.hostname().empty() ? "-" : agent.hostname(),
                  role == agent.labels().end() || role->second.empty() ? "-" : role->second,
                  AgentStateName(agent.state()), FormatAgo(agent.last_seen_unix_ms(), now),
                  FormatPercent(agent.cpu_usage_ratio()), FormatPercent(agent.memory_used_ratio()),
                  FormatPercent(agent.disk_used_ratio()), absl::StrCat(agent.lost_batches())});
  }
  table.Print(out);
}

void PrintMetrics(const v1::GetMetricsResponse& response, absl::Time now, std::ostream& out) {
  Table table({"NAME", "LABELS", "VALUE", "P50", "P95", "P99"});
  for (const v1::MetricValue& metric : response.metrics()) {
    if (metric.is_histogram()) {
      table.AddRow({metric.name(), FormatLabels(metric.labels()), FormatNumber(metric.value()),
                    FormatNumber(metric.p50()), FormatNumber(metric.p95()),
                    FormatNumber(metric.p99())});
    } else {
      table.AddRow({metric.name(), FormatLabels(metric.labels()), FormatNumber(metric.value()), "-",
                    "-", "-"});
    }
  }
  table.Print(out);
  for (const v1::DiagnosticTable& diagnostic : response.diagnostics()) {
    out << '\n'
        << OneLine(diagnostic.name()) << " (collected "
        << FormatAgo(diagnostic.collected_unix_ms(), now) << ")\n";
    if (!diagnostic.error().empty()) {
      out << "  error: " << OneLine(diagnostic.error()) << '\n';
      continue;
    }
    Table rows({diagnostic.columns().begin(), diagnostic.columns().end()});
    for (const v1::DiagnosticRow& row : diagnostic.rows()) {
      rows.AddRow({row.cells().begin(), row.cells().end()});
    }
    rows.Print(out, "  ");
  }
  if (response.declared_size() > 0) {
    // Scraped metrics, outside the built-in schema: rules may name them.
    out << "\ndeclared (scraped) metrics\n";
    Table declared({"NAME", "KIND", "UNIT", "COLLECTOR", "HELP"});
    for (const v1::MetricDeclaration& d : response.declared()) {
      declared.AddRow({OneLine(d.name()),
                       d.kind() == v1::MetricDeclaration::HISTOGRAM ? "histogram"
                       : d.per_second_rate()                        ? "gauge (rate/s)"
                                                                    : "gauge",
                       d.unit().empty() ? "-" : OneLine(d.unit()), OneLine(d.collector()),
                       OneLine(d.help())});
    }
    declared.Print(out, "  ");
  }
}

void AddAgentsCommands(CLI::App& app, CommandEnv& env) {
  CLI::App* agents = app.add_subcommand("agents", "List the agents, their state and load");
  agents->callback([&env] { env.SetAction([&env] { return RunAgents(env); }); });

  auto metrics_options = std::make_shared<MetricsOptions>();
  CLI::App* metrics = app.add_subcommand("metrics", "Latest metrics and diagnostics of one agent");
  metrics->add_option("agent", metrics_options->agent, "agent id")->required();
  metrics->add_option("--prefix", metrics_options->prefix, "only metrics whose name starts so");
  metrics->callback([&env, metrics_options] {
    env.SetAction([&env, metrics_options] { return RunMetrics(env, *metrics_options); });
  });

  CLI::App* whoami = app.add_subcommand("whoami", "Who the controller takes this token for");
  whoami->callback([&env] { env.SetAction([&env] { return RunWhoAmI(env); }); });
}

}  // namespace vigil::cli
