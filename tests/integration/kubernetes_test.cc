// deploy/kubernetes checked without a cluster (Debian's kubectl cannot validate without a
// server): kinds and required fields, selectors that match their pods, container arguments the
// built binaries accept, every path a config names mounted, the ConfigMaps' configs as the
// binaries read them. Then the sidecar arrangement for real: nginx and vigil-agent sharing only a
// log folder, with the manifest's nginx log format, agent config and arguments (mount paths
// mapped to temporary folders), the agent's id a pod name under its workload's certificate.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/agent_config.h"
#include "agent/collector.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "vigil/v1/control_service.pb.h"

namespace vigil {
namespace {

using testing::BinaryPath;
using testing::RunCommand;
using testing::WaitUntil;

struct Object {
  std::string file;
  YAML::Node node;
  std::string kind() const { return node["kind"].as<std::string>(""); }
  std::string name() const { return node["metadata"]["name"].as<std::string>(""); }
};

// Every object of every deploy/kubernetes/*.yaml, in file order.
std::vector<Object> LoadManifests() {
  std::vector<Object> objects;
  std::vector<std::string> files;
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::SourcePath("deploy/kubernetes"))) {
    if (entry.path().extension() == ".yaml") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  for (const std::string& file : files) {
    for (const YAML::Node& node : YAML::LoadAllFromFile(file)) {
      if (node.IsMap()) objects.push_back({file, node});
    }
  }
  return objects;
}

const Object* Find(const std::vector<Object>& objects, absl::string_view kind,
                   absl::string_view name) {
  for (const Object& o : objects) {
    if (o.kind() == kind && o.name() == name) return &o;
  }
  return nullptr;
}

bool IsWorkload(const Object& o) {
  return o.kind() == "StatefulSet" || o.kind() == "DaemonSet" || o.kind() == "Deployment";
}

// The binary an image runs: "vigil-controller:dev" -> "vigil-controller"; "" for other images.
std::string BinaryOfImage(const std::string& image) {
  const std::string repository = image.substr(0, image.find(':'));
  const std::string last = repository.substr(repository.rfind('/') + 1);
  return last == "vigil-controller" || last == "vigil-agent" ? last : "";
}

// The long flags `BINARY --help` lists.
std::set<std::string> HelpFlags(const std::string& binary) {
  static std::map<std::string, std::set<std::string>>* cache =
      new std::map<std::string, std::set<std::string>>();
  auto [it, inserted] = cache->try_emplace(binary);
  if (inserted) {
    testing::CommandResult help = RunCommand({BinaryPath(binary), "--help"});
    EXPECT_EQ(help.exit_code, 0) << help.output;
    for (absl::string_view token : absl::StrSplit(help.output, absl::ByAnyChar(" \t\n,=[]"))) {
      if (absl::StartsWith(token, "--") && token.size() > 2) it->second.insert(std::string(token));
    }
  }
  return it->second;
}

// "--name=value" or "--name": the flag.
std::string FlagOf(const std::string& arg) { return arg.substr(0, arg.find('=')); }
std::string ValueOf(const std::string& arg) {
  const size_t eq = arg.find('=');
  return eq == std::string::npos ? "" : arg.substr(eq + 1);
}

std::vector<std::string> Args(const YAML::Node& container) {
  std::vector<std::string> args;
  for (const YAML::Node& a : container["args"]) args.push_back(a.as<std::string>());
  return args;
}

// The text of the file a container's `--config` names, from the ConfigMap mounted there.
std::string ConfigOf(const std::vector<Object>& objects, const YAML::Node& pod,
                     const YAML::Node& container) {
  std::string path;
  for (const std::string& arg : Args(container)) {
    if (FlagOf(arg) == "--config") path = ValueOf(arg);
  }
  for (const YAML::Node& mount : container["volumeMounts"]) {
    if (mount["mountPath"].as<std::string>() != path) continue;
    for (const YAML::Node& volume : pod["volumes"]) {
      if (volume["name"].as<std::string>() == mount["name"].as<std::string>() &&
          volume["configMap"]) {
        const Object* map =
            Find(objects, "ConfigMap", volume["configMap"]["name"].as<std::string>());
        if (map != nullptr)
          return map->node["data"][mount["subPath"].as<std::string>()].as<std::string>("");
      }
    }
  }
  ADD_FAILURE() << "no ConfigMap mounted at --config '" << path << "'";
  return "";
}

// Checks a config file as its binary reads it. The agent's goes through the real parser with the
// built-in collectors; the controller's keys must each be a long flag of the binary in
// snake_case. A binary with a config check mode (`--check-config`) is the place to run it too.
void CheckConfigFile(const std::string& binary, const std::string& where, const std::string& text) {
  if (binary == "vigil-agent") {
    agent::CollectorRegistry registry;
    agent::RegisterBuiltinCollectors(registry);
    auto config = agent::ParseAgentConfig(text, where, registry);
    EXPECT_TRUE(config.ok()) << where << ": " << config.status();
    return;
  }
  const YAML::Node root = YAML::Load(text);
  ASSERT_TRUE(root.IsMap()) << where;
  const std::set<std::string> flags = HelpFlags(binary);
  for (const auto& entry : root) {
    const std::string key = entry.first.as<std::string>();
    EXPECT_TRUE(flags.count("--" + absl::StrReplaceAll(key, {{"_", "-"}})))
        << where << ": key '" << key << "' is no flag of " << binary;
  }
}

// A node that tests false (a default YAML::Node is a defined null, which tests true).
YAML::Node Absent() { return YAML::Node(YAML::NodeType::Undefined); }

// node[k1][k2]...; Absent() when a key is missing (yaml-cpp throws on indexing a missing one).
YAML::Node At(YAML::Node node, std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    if (!node || !node.IsMap() || !node[key]) return Absent();
    node.reset(node[key]);  // rebinds; `node = ...` would overwrite the tree's node
  }
  return node;
}

// The file and folder paths a config names.
std::vector<std::string> PathsNamed(const std::string& binary, const std::string& text) {
  std::vector<std::string> paths;
  const YAML::Node root = YAML::Load(text);
  auto take = [&](const YAML::Node& node) {
    if (node && node.IsScalar() && absl::StartsWith(node.as<std::string>(), "/")) {
      paths.push_back(node.as<std::string>());
    }
  };
  if (binary == "vigil-agent") {
    for (const char* key : {"journal", "spool_dir", "result_journal", "audit_checkpoint",
                            "controller_public_key"}) {
      take(At(root, {key}));
    }
    for (const char* key : {"ca", "cert", "key"}) take(At(root, {"tls", key}));
    take(At(root, {"collectors", "host", "proc_root"}));
    take(At(root, {"collectors", "host", "mounts_root"}));
    take(At(root, {"collectors", "nginx", "access_log"}));
  } else {
    for (const auto& entry : root) take(entry.second);  // every flag value that is a path
  }
  return paths;
}

// The mount of `container` that holds `path`, or a null node.
YAML::Node MountHolding(const YAML::Node& container, const std::string& path) {
  for (const YAML::Node& mount : container["volumeMounts"]) {
    const std::string at = mount["mountPath"].as<std::string>();
    if (path == at || absl::StartsWith(path, absl::StrCat(absl::StripSuffix(at, "/"), "/"))) {
      return mount;
    }
  }
  return Absent();
}

YAML::Node Volume(const YAML::Node& pod, const std::string& name) {
  for (const YAML::Node& volume : pod["volumes"]) {
    if (volume["name"].as<std::string>() == name) return volume;
  }
  return Absent();
}

// Calls `visit(object, pod spec, container, binary)` for each container of each workload.
template <typename Visit>
void ForEachContainer(const std::vector<Object>& objects, Visit visit) {
  for (const Object& o : objects) {
    if (!IsWorkload(o)) continue;
    const YAML::Node pod = o.node["spec"]["template"]["spec"];
    for (const YAML::Node& container : pod["containers"]) {
      visit(o, pod, container, BinaryOfImage(container["image"].as<std::string>("")));
    }
  }
}

TEST(KubernetesManifests, KindsRequiredFieldsAndSelectors) {
  const std::vector<Object> objects = LoadManifests();
  const std::set<std::string> kinds = {"Namespace",   "ConfigMap", "Service",
                                       "StatefulSet", "DaemonSet", "Deployment"};
  for (const Object& o : objects) {
    SCOPED_TRACE(absl::StrCat(o.file, ": ", o.kind(), " ", o.name()));
    EXPECT_TRUE(kinds.count(o.kind()));
    EXPECT_FALSE(o.node["apiVersion"].as<std::string>("").empty());
    EXPECT_FALSE(o.name().empty());
    if (o.kind() != "Namespace") {
      EXPECT_EQ(o.node["metadata"]["namespace"].as<std::string>(""), "vigil");
    }
    if (IsWorkload(o)) {
      EXPECT_EQ(o.node["apiVersion"].as<std::string>(), "apps/v1");
      const YAML::Node labels = o.node["spec"]["template"]["metadata"]["labels"];
      ASSERT_TRUE(o.node["spec"]["selector"]["matchLabels"].IsMap());
      for (const auto& kv : o.node["spec"]["selector"]["matchLabels"]) {
        EXPECT_EQ(labels[kv.first.as<std::string>()].as<std::string>(""),
                  kv.second.as<std::string>())
            << "selector " << kv.first.as<std::string>() << " does not match the pods' labels";
      }
      const YAML::Node pod = o.node["spec"]["template"]["spec"];
      ASSERT_TRUE(pod["containers"].IsSequence() && pod["containers"].size() > 0);
      std::set<std::string> claims;
      for (const YAML::Node& claim : o.node["spec"]["volumeClaimTemplates"]) {
        claims.insert(claim["metadata"]["name"].as<std::string>());
      }
      for (const YAML::Node& container : pod["containers"]) {
        EXPECT_FALSE(container["name"].as<std::string>("").empty());
        EXPECT_FALSE(container["image"].as<std::string>("").empty());
        EXPECT_TRUE(container["args"].IsSequence()) << container["name"].as<std::string>("");
        for (const YAML::Node& mount : container["volumeMounts"]) {
          const std::string name = mount["name"].as<std::string>();
          const YAML::Node volume = Volume(pod, name);
          EXPECT_TRUE(volume || claims.count(name)) << "mount of unknown volume " << name;
          if (volume && volume["configMap"]) {
            const Object* map =
                Find(objects, "ConfigMap", volume["configMap"]["name"].as<std::string>());
            ASSERT_NE(map, nullptr) << "volume " << name << " names a missing ConfigMap";
            if (mount["subPath"]) {
              EXPECT_TRUE(map->node["data"][mount["subPath"].as<std::string>()])
                  << "subPath " << mount["subPath"].as<std::string>() << " not in " << map->name();
            }
          }
        }
      }
    }
  }
  // The controller: a StatefulSet with its database on a claim, behind its Service.
  const Object* controller = Find(objects, "StatefulSet", "vigil-controller");
  ASSERT_NE(controller, nullptr);
  const Object* service = Find(objects, "Service", "vigil-controller");
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(controller->node["spec"]["serviceName"].as<std::string>(""), service->name());
  EXPECT_EQ(controller->node["spec"]["replicas"].as<int>(0), 1) << "one SQLite database";
  const YAML::Node pod = controller->node["spec"]["template"]["spec"];
  for (const auto& kv : service->node["spec"]["selector"]) {
    EXPECT_EQ(controller->node["spec"]["template"]["metadata"]["labels"][kv.first.as<std::string>()]
                  .as<std::string>(""),
              kv.second.as<std::string>());
  }
  std::set<std::string> port_names;
  for (const YAML::Node& port : pod["containers"][0]["ports"]) {
    port_names.insert(port["name"].as<std::string>());
  }
  for (const YAML::Node& port : service->node["spec"]["ports"]) {
    EXPECT_TRUE(port_names.count(port["targetPort"].as<std::string>()))
        << "Service port " << port["name"].as<std::string>() << " targets no container port";
  }
  YAML::Node data = MountHolding(pod["containers"][0], "/var/lib/vigil/vigil.db");
  ASSERT_TRUE(data) << "/var/lib/vigil is not mounted";
  EXPECT_EQ(
      data["name"].as<std::string>(),
      controller->node["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as<std::string>());
  // The agent on every node and beside the example app.
  EXPECT_NE(Find(objects, "DaemonSet", "vigil-agent"), nullptr);
  EXPECT_NE(Find(objects, "Deployment", "web"), nullptr);
}

TEST(KubernetesManifests, AgentArgumentsAreFlagsTheAgentAccepts) {
  int checked = 0;
  ForEachContainer(LoadManifests(), [&](const Object& o, const YAML::Node&,
                                        const YAML::Node& container, const std::string& binary) {
    if (binary != "vigil-agent") return;
    const std::set<std::string> flags = HelpFlags(binary);
    for (const std::string& arg : Args(container)) {
      EXPECT_TRUE(flags.count(FlagOf(arg)))
          << o.name() << ": " << binary << " has no " << FlagOf(arg);
      ++checked;
    }
  });
  EXPECT_GE(checked, 12) << "the DaemonSet's and the sidecar's arguments";
}

TEST(KubernetesManifests, ControllerArgumentsAreFlagsTheControllerAccepts) {
  int checked = 0;
  ForEachContainer(LoadManifests(), [&](const Object& o, const YAML::Node&,
                                        const YAML::Node& container, const std::string& binary) {
    if (binary != "vigil-controller") return;
    for (const std::string& arg : Args(container)) {
      EXPECT_TRUE(HelpFlags(binary).count(FlagOf(arg))) << o.name() << ": no " << FlagOf(arg);
      ++checked;
    }
  });
  EXPECT_GE(checked, 1);
}

// "host:port" -> port; "" when the text has no port after its last colon.
std::string PortOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? "" : address.substr(colon + 1);
}

// Where an agent's --controller lands: through the Service its host names
// (NAME.NAMESPACE.svc), the Service port it dials, that port's targetPort by name on the
// controller's container, and the ConfigMap's listen and agent_listen. The agents must land on
// agent_listen, a port the CLI's listen is not.
TEST(KubernetesManifests, AgentsDialTheControllersAgentPortThroughTheService) {
  const std::vector<Object> objects = LoadManifests();
  std::string listen_port, agent_port;
  std::map<std::string, std::string> container_ports;  // name -> containerPort
  ForEachContainer(objects, [&](const Object&, const YAML::Node& pod, const YAML::Node& container,
                                const std::string& binary) {
    if (binary != "vigil-controller") {
      return;
    }
    const YAML::Node config = YAML::Load(ConfigOf(objects, pod, container));
    listen_port = PortOf(At(config, {"listen"}).as<std::string>(""));
    agent_port = PortOf(At(config, {"agent_listen"}).as<std::string>(""));
    for (const YAML::Node& port : container["ports"]) {
      container_ports[port["name"].as<std::string>()] = port["containerPort"].as<std::string>();
    }
  });
  ASSERT_FALSE(agent_port.empty()) << "the controller's ConfigMap sets no agent_listen port";
  EXPECT_NE(agent_port, listen_port) << "the agents' port is the CLI's";

  int agents = 0;
  ForEachContainer(objects, [&](const Object& o, const YAML::Node&, const YAML::Node& container,
                                const std::string& binary) {
    if (binary != "vigil-agent") {
      return;
    }
    std::string controller;
    for (const std::string& arg : Args(container)) {
      if (FlagOf(arg) == "--controller") {
        controller = ValueOf(arg);
      }
    }
    const std::string where = absl::StrCat(o.name(), ": --controller=", controller);
    const std::vector<std::string> host =
        absl::StrSplit(controller.substr(0, controller.rfind(':')), '.');
    ASSERT_EQ(host.size(), 3u) << where << " is not SERVICE.NAMESPACE.svc:PORT";
    EXPECT_EQ(host[2], "svc") << where;
    const Object* service = Find(objects, "Service", host[0]);
    ASSERT_NE(service, nullptr) << where << ": no Service " << host[0];
    EXPECT_EQ(service->node["metadata"]["namespace"].as<std::string>(""), host[1]) << where;
    std::string target;
    for (const YAML::Node& port : service->node["spec"]["ports"]) {
      if (port["port"].as<std::string>() == PortOf(controller)) {
        target = port["targetPort"].as<std::string>();
      }
    }
    ASSERT_FALSE(target.empty()) << where << ": the Service has no port " << PortOf(controller);
    EXPECT_EQ(container_ports[target], agent_port)
        << where << ": the Service sends it to container port '" << target << "' ("
        << container_ports[target] << "), not to agent_listen's " << agent_port;
    ++agents;
  });
  EXPECT_EQ(agents, 2) << "the DaemonSet's agent and the sidecar";
}

TEST(KubernetesManifests, ConfigMapsLoadAsTheBinariesReadThem) {
  const std::vector<Object> objects = LoadManifests();
  int checked = 0;
  ForEachContainer(objects, [&](const Object& o, const YAML::Node& pod, const YAML::Node& container,
                                const std::string& binary) {
    if (binary.empty()) return;
    CheckConfigFile(binary, absl::StrCat(o.name(), "/", container["name"].as<std::string>()),
                    ConfigOf(objects, pod, container));
    ++checked;
  });
  EXPECT_EQ(checked, 3) << "controller, node agent, sidecar agent";
}

TEST(KubernetesManifests, EveryPathAConfigOrArgumentNamesIsMounted) {
  const std::vector<Object> objects = LoadManifests();
  ForEachContainer(objects, [&](const Object& o, const YAML::Node& pod, const YAML::Node& container,
                                const std::string& binary) {
    if (binary.empty()) return;
    const std::string config = ConfigOf(objects, pod, container);
    std::vector<std::string> paths = PathsNamed(binary, config);
    for (const std::string& arg : Args(container)) {
      if (absl::StartsWith(ValueOf(arg), "/")) paths.push_back(ValueOf(arg));
    }
    EXPECT_GE(paths.size(), 3u) << o.name();
    for (const std::string& path : paths) {
      EXPECT_TRUE(MountHolding(container, path))
          << o.name() << "/" << container["name"].as<std::string>() << ": " << path
          << " is not on any volume mount";
    }
    // A node agent's roots are the host's own /proc and /, read-only.
    const YAML::Node host = At(YAML::Load(config), {"collectors", "host"});
    for (const auto& [key, host_path] :
         {std::pair<const char*, const char*>{"proc_root", "/proc"}, {"mounts_root", "/"}}) {
      if (!At(host, {key})) continue;
      const YAML::Node mount = MountHolding(container, host[key].as<std::string>());
      ASSERT_TRUE(mount);
      EXPECT_EQ(mount["mountPath"].as<std::string>(), host[key].as<std::string>());
      EXPECT_TRUE(mount["readOnly"].as<bool>(false)) << key;
      EXPECT_EQ(
          Volume(pod, mount["name"].as<std::string>())["hostPath"]["path"].as<std::string>(""),
          host_path)
          << key;
    }
  });
  const Object* daemonset = Find(objects, "DaemonSet", "vigil-agent");
  ASSERT_NE(daemonset, nullptr);
  const YAML::Node node_config =
      YAML::Load(ConfigOf(objects, daemonset->node["spec"]["template"]["spec"],
                          daemonset->node["spec"]["template"]["spec"]["containers"][0]));
  EXPECT_EQ(node_config["collectors"]["host"]["proc_root"].as<std::string>(""), "/host/proc");
  EXPECT_EQ(node_config["collectors"]["host"]["mounts_root"].as<std::string>(""), "/host/root");
}

// The example app's pod: nginx and the agent share one emptyDir, the log folder, and nothing
// else; nginx logs there and the agent reads the same file from it, read-only.
TEST(KubernetesManifests, SidecarSharesOnlyTheLogFolderWithTheApp) {
  const std::vector<Object> objects = LoadManifests();
  const Object* web = Find(objects, "Deployment", "web");
  ASSERT_NE(web, nullptr);
  const YAML::Node pod = web->node["spec"]["template"]["spec"];
  YAML::Node nginx = Absent(), agent = Absent();
  for (const YAML::Node& c : pod["containers"]) {
    (BinaryOfImage(c["image"].as<std::string>()) == "vigil-agent" ? agent : nginx).reset(c);
  }
  ASSERT_TRUE(nginx && agent);
  std::set<std::string> nginx_volumes, shared;
  for (const YAML::Node& m : nginx["volumeMounts"])
    nginx_volumes.insert(m["name"].as<std::string>());
  for (const YAML::Node& m : agent["volumeMounts"]) {
    if (nginx_volumes.count(m["name"].as<std::string>()))
      shared.insert(m["name"].as<std::string>());
  }
  ASSERT_EQ(shared.size(), 1u);
  EXPECT_TRUE(Volume(pod, *shared.begin())["emptyDir"]);

  const std::string log =
      YAML::Load(ConfigOf(objects, pod, agent))["collectors"]["nginx"]["access_log"]
          .as<std::string>();
  const YAML::Node agent_mount = MountHolding(agent, log);
  const YAML::Node nginx_mount = MountHolding(nginx, log);
  ASSERT_TRUE(agent_mount && nginx_mount);
  EXPECT_EQ(agent_mount["name"].as<std::string>(), *shared.begin());
  EXPECT_EQ(nginx_mount["name"].as<std::string>(), *shared.begin());
  EXPECT_TRUE(agent_mount["readOnly"].as<bool>(false));
  const Object* nginx_config = Find(objects, "ConfigMap", "web-nginx-config");
  ASSERT_NE(nginx_config, nullptr);
  EXPECT_TRUE(absl::StrContains(nginx_config->node["data"]["nginx.conf"].as<std::string>(),
                                absl::StrCat("access_log ", log, " vigil;")));
}

// nginx's log_format in the sidecar example: the quoted parts after "log_format vigil", joined.
std::string ManifestLogFormat(const std::string& nginx_conf) {
  const size_t start = nginx_conf.find("log_format vigil");
  const size_t end = nginx_conf.find(';', start);
  std::string format;
  bool quoted = false;
  for (size_t i = start; i < end; ++i) {
    if (nginx_conf[i] == '\'') {
      quoted = !quoted;
    } else if (quoted) {
      format += nginx_conf[i];
    }
  }
  return format;
}

TEST(KubernetesSidecar, AgentStreamsTheAppsNginxMetricsFromTheSharedLogFolder) {
  const std::vector<Object> objects = LoadManifests();
  const Object* web = Find(objects, "Deployment", "web");
  ASSERT_NE(web, nullptr);
  const YAML::Node pod = web->node["spec"]["template"]["spec"];
  YAML::Node agent = Absent(), nginx_container = Absent();
  for (const YAML::Node& c : pod["containers"]) {
    (BinaryOfImage(c["image"].as<std::string>()) == "vigil-agent" ? agent : nginx_container)
        .reset(c);
  }
  ASSERT_TRUE(agent && nginx_container);

  // Three folders: nginx's own, the agent's own, and the shared log folder (the emptyDir).
  testing::TempDir dir;
  for (const char* d : {"app", "agent", "agent/state", "agent/tls", "logs"}) {
    ASSERT_EQ(mkdir(dir.File(d).c_str(), 0700), 0) << d;
  }
  const std::string pod_name = "web-7d9f8c6b5-x2k4p";
  testing::CommandResult made = RunCommand({"bash", testing::SourcePath("scripts/dev-ca.sh"),
                                            dir.File("ca"), "--pod", "web", "--user", "admin"});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  // The Secret's keys, as `kubectl create secret` in README.md makes them.
  testing::WriteFile(dir.File("agent/tls/ca.pem"), testing::ReadFileOrEmpty(dir.File("ca/ca.pem")));
  testing::WriteFile(dir.File("agent/tls/tls.crt"),
                     testing::ReadFileOrEmpty(dir.File("ca/pod-web.pem")));
  testing::WriteFile(dir.File("agent/tls/tls.key"),
                     testing::ReadFileOrEmpty(dir.File("ca/pod-web.key")));

  // The agent's mounts, mapped to the folders above; its config file from the ConfigMap.
  std::vector<std::pair<std::string, std::string>> mapping;
  std::string log_mount;
  for (const YAML::Node& m : agent["volumeMounts"]) {
    const std::string at = m["mountPath"].as<std::string>();
    const YAML::Node volume = Volume(pod, m["name"].as<std::string>());
    if (volume["configMap"]) {
      mapping.emplace_back(at, dir.File("agent/agent.yaml"));
    } else if (volume["secret"]) {
      mapping.emplace_back(at, dir.File("agent/tls"));
    } else if (Volume(pod, m["name"].as<std::string>())["emptyDir"] &&
               MountHolding(nginx_container, at)) {
      mapping.emplace_back(at, dir.File("logs"));
      log_mount = at;
    } else {
      mapping.emplace_back(at, dir.File("agent/state"));
    }
  }
  ASSERT_FALSE(log_mount.empty());
  auto map_paths = [&](std::string text) {
    for (const auto& [from, to] : mapping) text = absl::StrReplaceAll(text, {{from, to}});
    return text;
  };
  testing::WriteFile(dir.File("agent/agent.yaml"), map_paths(ConfigOf(objects, pod, agent)));

  // nginx with the manifest's log format, writing its access log into the shared folder.
  const std::string nginx_conf =
      Find(objects, "ConfigMap", "web-nginx-config")->node["data"]["nginx.conf"].as<std::string>();
  const std::string format = ManifestLogFormat(nginx_conf);
  ASSERT_TRUE(absl::StrContains(format, "$request_time")) << format;
  testing::HttpUpstream upstream;
  upstream.SetRoute("/api", absl::Milliseconds(20), 200);
  testing::NginxServer nginx(dir.File("app"), upstream.port(), format, dir.File("logs/access.log"));
  ASSERT_TRUE(nginx.ok()) << testing::ReadFileOrEmpty(dir.File("app/nginx.log"));

  // The controller over mutual TLS, and the agent with the manifest's arguments.
  const std::string address = absl::StrCat("127.0.0.1:", testing::FreeLoopbackPort());
  const std::string db = dir.File("controller/vigil.db");
  const std::string token = testing::AddVigilUser(db, "tester", "viewer");
  testing::Subprocess controller(
      {BinaryPath("vigil-controller"), "--listen=" + address, "--db=" + db, "--http-listen=off",
       "--tls-ca=" + dir.File("ca/ca.pem"), "--tls-cert=" + dir.File("ca/controller.pem"),
       "--tls-key=" + dir.File("ca/controller.key")},
      {}, dir.File("controller.log"));
  std::vector<std::string> argv = {BinaryPath("vigil-agent")};
  for (const std::string& arg : Args(agent)) {
    if (FlagOf(arg) == "--controller") {
      argv.push_back("--controller=" + address);  // the Service's name resolves in a cluster only
    } else {
      argv.push_back(absl::StrReplaceAll(map_paths(arg), {{"$(POD_NAME)", pod_name}}));
    }
  }
  testing::Subprocess agent_process(argv, {}, dir.File("agent.log"));

  std::atomic<bool> traffic{true};
  std::thread load([&] {
    while (traffic) testing::HttpGet(nginx.port(), "/api");
  });
  std::map<std::string, v1::MetricValue> metrics;
  const bool seen = WaitUntil(
      [&] {
        auto r = RunCommand({BinaryPath("vigil"), "--controller=" + address,
                             "--tls-ca=" + dir.File("ca/ca.pem"),
                             "--tls-cert=" + dir.File("ca/user-admin.pem"),
                             "--tls-key=" + dir.File("ca/user-admin.key"), "--token=" + token,
                             "metrics", pod_name, "-o", "json"});
        v1::GetMetricsResponse response;
        if (r.exit_code != 0 ||
            !google::protobuf::util::JsonStringToMessage(r.stdout_text, &response).ok()) {
          return false;
        }
        metrics.clear();
        for (const auto& m : response.metrics()) metrics[m.name()] = m;
        return metrics.count("nginx_requests_per_second") &&
               metrics["nginx_requests_per_second"].value() > 0 &&
               metrics.count("nginx_request_duration_seconds") &&
               metrics["nginx_request_duration_seconds"].window_count() > 0;
      },
      absl::Seconds(20), absl::Milliseconds(500));
  traffic = false;
  load.join();
  ASSERT_TRUE(seen) << agent_process.Output() << controller.Output();
  EXPECT_EQ(metrics["nginx_up"].value(), 1);
  EXPECT_EQ(metrics["nginx_unparsed_lines"].value(), 0) << "nginx logs what the agent parses";
  EXPECT_GE(metrics["nginx_request_duration_seconds"].p95(), 0.015) << "20 ms upstream";
  // nginx wrote into the shared folder only; the agent's state stayed in its own.
  EXPECT_FALSE(testing::ReadFileOrEmpty(dir.File("logs/access.log")).empty());
  EXPECT_FALSE(std::filesystem::exists(dir.File("app/nginx/access.log")));
  EXPECT_TRUE(std::filesystem::exists(dir.File("agent/state/agent.journal")))
      << agent_process.Output();
}

}  // namespace
}  // namespace vigil
