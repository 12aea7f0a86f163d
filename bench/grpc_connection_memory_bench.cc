// What gRPC's server keeps per agent connection, by what the connection holds: nothing but the
// connection, a finished unary call, or one long bidirectional stream as an agent's Connect is;
// and the server's CPU per agent message either way. The sizing question behind the memory aim
// of 50 KiB per agent (README, "Where an agent's controller memory goes"): would agents that send
// each batch as a unary call, holding no stream open, cost the controller less memory, and what
// would each message cost it in CPU instead?
//
// The server runs in a child process forked before gRPC starts (one fresh server per mode, with
// the controller's channel arguments and read sizing), on the callback API's generic service;
// the clients run in this process, each channel on a connection of its own. The server's heap is
// glibc's mallinfo2 (in use, arenas and mmapped blocks): this program is not linked with
// jemalloc, so figures are comparable between modes, not to the controller's RSS. Prints bytes per
// connection as the slope between --low and --high connections, and the server's CPU per message
// over --rounds messages on each of --busy connections.
#include <fcntl.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "common/record_file.h"

namespace {

using vigil::WriteAll;

constexpr char kStreamMethod[] = "/vigil.bench.Bench/Stream";
constexpr char kUnaryMethod[] = "/vigil.bench.Bench/Unary";
// An agent's batch of 50 series is 1.3-1.5 KB on the wire; the controller's answer is small.
constexpr size_t kRequestBytes = 1400;
constexpr size_t kResponseBytes = 16;

grpc::ByteBuffer Bytes(size_t n) {
  const std::string s(n, 'x');
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

// ---- the server (child process) ----

// Answers every message it reads with one small message; a unary call is then finished, a
// stream stays open and reads on, as the controller's agent streams do.
class EchoReactor : public grpc::ServerGenericBidiReactor {
 public:
  explicit EchoReactor(bool unary) : unary_(unary), out_(Bytes(kResponseBytes)) { StartRead(&in_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    in_.Clear();
    StartWrite(&out_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok || unary_) {
      Finish(grpc::Status::OK);
      return;
    }
    StartRead(&in_);
  }
  void OnDone() override { delete this; }

 private:
  const bool unary_;
  grpc::ByteBuffer in_;
  grpc::ByteBuffer out_;
};

class EchoService : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new EchoReactor(ctx->method() == kUnaryMethod);
  }
};

int64_t CpuMicros() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1'000'000LL + usage.ru_utime.tv_usec +
         usage.ru_stime.tv_usec;
}

// One line from `fd` (without its newline); empty at end of file.
std::string ReadLine(int fd) {
  std::string line;
  char c;
  while (true) {
    const ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0 || c == '\n') {
      return line;
    }
    line.push_back(c);
  }
}

// Serves until its command pipe closes. Commands: "heap" answers the bytes in use, "cpu" the
// process's CPU time in microseconds. The first line it writes is its port.
[[noreturn]] void RunServer(int commands, int answers) {
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  // The controller's settings for agents' connections (controller/controller.cc).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_TCP_READ_CHUNK_SIZE, 1024);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "server: cannot listen on 127.0.0.1\n");
    _exit(1);
  }
  WriteAll(answers, absl::StrCat(port, "\n"));
  while (true) {
    const std::string command = ReadLine(commands);
    if (command == "heap") {
      const struct mallinfo2 info = mallinfo2();
      WriteAll(answers, absl::StrCat(info.uordblks + info.hblkhd, "\n"));
    } else if (command == "cpu") {
      WriteAll(answers, absl::StrCat(CpuMicros(), "\n"));
    } else {
      break;
    }
  }
  _exit(0);  // the clients are gone or going; nothing to flush
}

// ---- the clients (this process) ----

// A stream that sends a message and waits for its answer, `exchanges` times in a row each time
// Exchange() is called; it stays open between and after.
class StreamClient : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamClient(grpc::GenericStub* stub) : out_(Bytes(kRequestBytes)) {
    stub->PrepareBidiStreamingCall(&context_, kStreamMethod, grpc::StubOptions(), this);
    StartCall();
  }
  void Exchange(int exchanges, absl::BlockingCounter* done) {
    left_ = exchanges;
    done_ = done;
    StartWrite(&out_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      return Fail();
    }
    StartRead(&in_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      return Fail();
    }
    if (--left_ > 0) {
      StartWrite(&out_);
      return;
    }
    done_->DecrementCount();
  }
  void OnDone(const grpc::Status& status) override {
    if (!status.ok() && !closing_) {
      std::fprintf(stderr, "stream ended: %s\n", status.error_message().c_str());
    }
    ended_.Notify();
  }
  // Cancels the stream and waits until gRPC is done with this reactor.
  void Close() {
    closing_ = true;
    context_.TryCancel();
    ended_.WaitForNotification();
  }

 private:
  void Fail() {
    std::fprintf(stderr, "stream failed\n");
    std::exit(1);
  }
  grpc::ClientContext context_;
  grpc::ByteBuffer out_;
  grpc::ByteBuffer in_;
  int left_ = 0;
  absl::BlockingCounter* done_ = nullptr;
  std::atomic<bool> closing_{false};
  absl::Notification ended_;
};

enum class Mode { kConnection, kUnary, kStream };

absl::string_view ModeName(Mode mode) {
  switch (mode) {
    case Mode::kConnection:
      return "connection only";
    case Mode::kUnary:
      return "after a unary call";
    case Mode::kStream:
      return "one open stream";
  }
  return "";
}

struct Agent {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
  std::unique_ptr<StreamClient> stream;
};

// `exchanges` unary calls in a row on each of `agents`, all agents at once.
void UnaryRounds(std::vector<Agent*>& agents, int exchanges) {
  absl::BlockingCounter done(static_cast<int>(agents.size()));
  const grpc::ByteBuffer request = Bytes(kRequestBytes);
  struct Caller {
    grpc::GenericStub* stub;
    const grpc::ByteBuffer* request;
    absl::BlockingCounter* done;
    int left;
    std::unique_ptr<grpc::ClientContext> context;
    grpc::ByteBuffer response;
    void Next() {
      context = std::make_unique<grpc::ClientContext>();
      stub->UnaryCall(context.get(), kUnaryMethod, grpc::StubOptions(), request, &response,
                      [this](const grpc::Status& status) {
                        if (!status.ok()) {
                          std::fprintf(stderr, "unary call: %s\n", status.error_message().c_str());
                          std::exit(1);
                        }
                        if (--left > 0) {
                          Next();
                        } else {
                          done->DecrementCount();
                        }
                      });
    }
  };
  std::vector<std::unique_ptr<Caller>> callers;
  callers.reserve(agents.size());
  for (Agent* agent : agents) {
    callers.push_back(std::make_unique<Caller>(
        Caller{agent->stub.get(), &request, &done, exchanges, nullptr, {}}));
  }
  for (auto& caller : callers) {
    caller->Next();
  }
  done.Wait();
}

void StreamRounds(std::vector<Agent*>& agents, int exchanges) {
  absl::BlockingCounter done(static_cast<int>(agents.size()));
  for (Agent* agent : agents) {
    agent->stream->Exchange(exchanges, &done);
  }
  done.Wait();
}

class ServerProcess {
 public:
  bool Start() {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) {
      return false;
    }
    pid_ = fork();
    if (pid_ < 0) {
      return false;
    }
    if (pid_ == 0) {
      close(to_child[1]);
      close(from_child[0]);
      RunServer(to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    commands_ = to_child[1];
    answers_ = from_child[0];
    return absl::SimpleAtoi(ReadLine(answers_), &port_) && port_ > 0;
  }
  int64_t Ask(absl::string_view what) {
    int64_t value = -1;
    if (!WriteAll(commands_, absl::StrCat(what, "\n")) ||
        !absl::SimpleAtoi(ReadLine(answers_), &value)) {
      std::fprintf(stderr, "the server did not answer '%s'\n", std::string(what).c_str());
      std::exit(1);
    }
    return value;
  }
  void Stop() {
    // Said, not only closed: the servers forked after this one hold copies of the pipe.
    WriteAll(commands_, "quit\n");
    close(commands_);
    close(answers_);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int commands_ = -1;
  int answers_ = -1;
  int port_ = 0;
};

struct Figures {
  double bytes_per_connection = 0;
  double cpu_us_per_message = 0;
};

// `server` serves this mode alone: a fresh process, so what one mode leaves in the heap does
// not count in the next.
Figures Measure(Mode mode, ServerProcess& server, int low, int high, int busy, int rounds) {
  const std::string target = absl::StrCat("127.0.0.1:", server.port());
  std::vector<std::unique_ptr<Agent>> agents;
  auto add_agents = [&](int count) {
    std::vector<Agent*> added;
    for (int i = 0; i < count; ++i) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      auto agent = std::make_unique<Agent>();
      agent->channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
      if (!agent->channel->WaitForConnected(
              gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(10, GPR_TIMESPAN)))) {
        std::fprintf(stderr, "connection %zu did not connect\n", agents.size());
        std::exit(1);
      }
      agent->stub = std::make_unique<grpc::GenericStub>(agent->channel);
      if (mode == Mode::kStream) {
        agent->stream = std::make_unique<StreamClient>(agent->stub.get());
      }
      added.push_back(agent.get());
      agents.push_back(std::move(agent));
    }
    // Each agent's first message, answered: what the server holds from then on is measured.
    if (mode == Mode::kUnary) {
      UnaryRounds(added, 1);
    }
    if (mode == Mode::kStream) {
      StreamRounds(added, 1);
    }
    usleep(500'000);  // let the server's threads finish with what they just handled
  };
  add_agents(low);
  const int64_t heap_low = server.Ask("heap");
  add_agents(high - low);
  const int64_t heap_high = server.Ask("heap");
  Figures figures;
  figures.bytes_per_connection = static_cast<double>(heap_high - heap_low) / (high - low);
  if (mode != Mode::kConnection) {
    std::vector<Agent*> some;
    some.reserve(busy);
    for (int i = 0; i < busy; ++i) {
      some.push_back(agents[i].get());
    }
    const int64_t cpu_before = server.Ask("cpu");
    if (mode == Mode::kUnary) {
      UnaryRounds(some, rounds);
    }
    if (mode == Mode::kStream) {
      StreamRounds(some, rounds);
    }
    const int64_t cpu_after = server.Ask("cpu");
    figures.cpu_us_per_message = static_cast<double>(cpu_after - cpu_before) / (busy * rounds);
  }
  for (auto& agent : agents) {
    if (agent->stream != nullptr) {
      agent->stream->Close();
    }
  }
  server.Stop();
  return figures;
}

int Flag(int argc, char** argv, absl::string_view name, int fallback) {
  const std::string prefix = absl::StrCat("--", name, "=");
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    int value = 0;
    if (absl::ConsumePrefix(&arg, prefix)) {
      if (!absl::SimpleAtoi(arg, &value) || value <= 0) {
        std::fprintf(stderr, "%s: --%s wants a positive number, not '%s'\n", argv[0],
                     std::string(name).c_str(), std::string(arg).c_str());
        std::exit(2);
      }
      return value;
    }
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (!absl::StartsWith(arg, "--low=") && !absl::StartsWith(arg, "--high=") &&
        !absl::StartsWith(arg, "--busy=") && !absl::StartsWith(arg, "--rounds=")) {
      std::fprintf(stderr, "usage: %s [--low=N] [--high=N] [--busy=N] [--rounds=N]\n", argv[0]);
      return 2;
    }
  }
  const int low = Flag(argc, argv, "low", 500);
  const int high = Flag(argc, argv, "high", 2500);
  const int busy = Flag(argc, argv, "busy", 200);
  const int rounds = Flag(argc, argv, "rounds", 200);
  if (high <= low || busy > low) {
    std::fprintf(stderr, "%s: wants --low < --high and --busy <= --low\n", argv[0]);
    return 2;
  }
  // A descriptor per connection in this process and one in the server's, each under this limit.
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  const rlim_t needed = static_cast<rlim_t>(high) + 64;
  if (limit.rlim_cur < needed) {
    std::fprintf(stderr, "%s: %d connections need about %llu descriptors; the limit is %llu\n",
                 argv[0], high, static_cast<unsigned long long>(needed),
                 static_cast<unsigned long long>(limit.rlim_cur));
    return 1;
  }
  // The controller's read sizing (controller/main.cc): reads sized by the connection.
  setenv("GRPC_EXPERIMENTS", "-tcp_read_chunks", 1);
  // Every server is forked before this process starts gRPC: a fork does not take gRPC's threads.
  const Mode modes[] = {Mode::kConnection, Mode::kUnary, Mode::kStream};
  ServerProcess servers[std::size(modes)];
  for (ServerProcess& server : servers) {
    if (!server.Start()) {
      std::fprintf(stderr, "%s: cannot start a server process\n", argv[0]);
      return 1;
    }
  }
  std::printf(
      "gRPC %s server, plain text on loopback; heap slope between %d and %d connections; "
      "CPU over %d messages on each of %d connections (%zu-byte requests)\n",
      grpc::Version().c_str(), low, high, rounds, busy, kRequestBytes);
  std::printf(
      "| what each connection holds | server heap per connection | server CPU per message |\n");
  std::printf("|---|---|---|\n");
  for (size_t i = 0; i < std::size(modes); ++i) {
    const Mode mode = modes[i];
    const Figures f = Measure(mode, servers[i], low, high, busy, rounds);
    std::printf(
        "| %s | %.0f bytes | %s |\n", std::string(ModeName(mode)).c_str(), f.bytes_per_connection,
        mode == Mode::kConnection ? "-" : absl::StrFormat("%.0f us", f.cpu_us_per_message).c_str());
    std::fflush(stdout);
  }
  return 0;
}
