#include "cli/watch_cmd.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/wire_metadata.h"

namespace vigil::cli {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(250);
constexpr absl::Duration kMaxBackoff = absl::Seconds(5);
constexpr absl::Duration kPollSlice = absl::Milliseconds(100);
constexpr absl::Duration kHealthyStream = absl::Seconds(2);

struct WatchOptions {
  std::string incident;
  uint64_t after = 0;
  bool after_given = false;  // without --after: only what happens from now on
};

// A seq the controller named in metadata (`key`), if it sent a valid one.
std::optional<uint64_t> SeqFromMetadata(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, absl::string_view key) {
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  uint64_t seq = 0;
  if (it == metadata.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &seq)) {
    return std::nullopt;
  }
  return seq;
}

bool Interrupted(CommandEnv& env) {
  return env.interrupt() != nullptr && env.interrupt()->triggered();
}

// Sleeps for `d`; false when interrupted meanwhile.
bool Sleep(CommandEnv& env, absl::Duration d) {
  if (env.interrupt() == nullptr) {
    absl::SleepFor(d);
    return true;
  }
  return env.interrupt()->SleepFor(d);
}

// Waits until the channel is connected (READY) or has failed once (TRANSIENT_FAILURE), for at
// most `timeout`; gRPC's own reconnect backoff paces the attempts. Returns the last state seen.
grpc_connectivity_state Settle(CommandEnv& env, grpc::Channel& channel, absl::Duration timeout,
                               bool stop_on_failure) {
  absl::Time deadline = absl::Now() + timeout;
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY && state != GRPC_CHANNEL_SHUTDOWN &&
         !(stop_on_failure && state == GRPC_CHANNEL_TRANSIENT_FAILURE) && !Interrupted(env) &&
         absl::Now() < deadline) {
    channel.WaitForStateChange(state,
                               absl::ToChronoTime(std::min(deadline, absl::Now() + kPollSlice)));
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return state;
}

// Errors that a reconnect cannot fix: say so and stop.
bool IsPermanent(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
      return true;
    default:
      return false;
  }
}

int RunWatch(CommandEnv& env, const WatchOptions& options) {
  ControllerClient* client = env.Client();
  if (client == nullptr) return kExitFailed;
  const std::string where = OneLine(client->options().controller);

  // A controller that is not there at the start is an error, like for every other verb; once
  // connected, losing it means reconnecting.
  bool connected = Settle(env, client->channel(), client->options().timeout,
                          /*stop_on_failure=*/true) == GRPC_CHANNEL_READY;
  if (Interrupted(env)) return kExitOk;
  // One outage is announced once: "lost" when a healthy stream breaks, "reconnected" when the
  // channel is back. A stream is healthy once it delivered an event or stayed open a while.
  bool lost = false;
  bool announced_reconnect = false;
  // Events are printed in seq order, each once: `last` is the resume point of the next stream.
  // Without --after it is unknown until the controller names where the first stream started.
  uint64_t last = options.after;
  bool positioned = options.after_given;
  absl::Duration backoff = kFirstBackoff;

  while (true) {
    if (lost) {
      while (!Interrupted(env) && Settle(env, client->channel(), absl::Seconds(1),
                                         /*stop_on_failure=*/false) != GRPC_CHANNEL_READY) {
      }
      if (Interrupted(env)) return kExitOk;
      if (!announced_reconnect) {
        env.err() << "vigil: reconnected to controller at " << where << ", "
                  << (positioned ? absl::StrCat("resuming after seq ", last)
                                 : std::string("following new events"))
                  << '\n';
        env.err().flush();
        announced_reconnect = true;
      }
    }

    grpc::ClientContext context;
    // Before the first connection, bound the wait like any other call; after it, a watch is
    // open-ended.
    client->Prepare(context, /*with_deadline=*/!connected);
    v1::WatchRequest request;
    request.set_after_seq(last);
    request.set_incident_id(options.incident);
    if (!positioned) {
      context.AddMetadata(std::string(kWatchLiveOnlyKey), "1");
    }
    bool delivered = false;
    absl::Time started = absl::Now();
    grpc::Status status;
    {
      Interrupt::Scope scope(env.interrupt(), &context);
      std::unique_ptr<grpc::ClientReaderInterface<v1::TimelineEvent>> reader =
          client->stub().Watch(&context, request);
      v1::TimelineEvent event;
      while (reader->Read(&event)) {
        delivered = true;
        if (positioned && event.seq() <= last) continue;  // delivered again after a resume
        last = event.seq();
        positioned = true;
        env.out() << (env.json() ? ToJson(event, /*pretty=*/false) : FormatEventLine(event))
                  << '\n';
        env.out().flush();
      }
      status = reader->Finish();
    }
    if (Interrupted(env)) return kExitOk;
    if (!positioned) {
      // Nothing printed yet: the next stream starts where this one did, so the outage in
      // between is not skipped.
      if (std::optional<uint64_t> start =
              SeqFromMetadata(context.GetServerInitialMetadata(), kWatchStartSeqKey)) {
        last = *start;
        positioned = true;
      }
    }
    if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      if (std::optional<uint64_t> resume =
              SeqFromMetadata(context.GetServerTrailingMetadata(), kResumeAfterSeqKey)) {
        // The controller ended the stream because this watcher fell behind, having sent
        // everything up to `resume`. Go on from what was printed (the same seq once every
        // sent event arrived), so nothing is skipped or printed twice.
        if (!positioned) {
          last = *resume;
          positioned = true;
        }
        connected = true;
        env.err() << "vigil: fell behind the controller's timeline (stream ended after seq "
                  << *resume << "); resuming after seq " << last << '\n';
        env.err().flush();
        if (delivered) {
          backoff = kFirstBackoff;
        } else {
          // Ended again before anything arrived: the controller is short of memory; wait.
          if (!Sleep(env, backoff)) return kExitOk;
          backoff = std::min(backoff * 2, kMaxBackoff);
        }
        continue;
      }
    }
    if (!connected || IsPermanent(status.error_code())) {
      if (status.ok()) return kExitOk;
      return env.Fail(client->DescribeError("Watch", status));
    }
    bool healthy = delivered || absl::Now() - started >= kHealthyStream;
    if (healthy) {
      lost = false;
      announced_reconnect = false;
      backoff = kFirstBackoff;
    }
    if (!lost) {
      env.err() << "vigil: lost connection to controller at " << where << ": "
                << (status.ok() ? "stream ended" : TransportReason(status.error_message()))
                << "; reconnecting (Ctrl-C to stop)\n";
      env.err().flush();
      lost = true;
    }
    if (!healthy) {
      // The stream failed before carrying anything: do not hammer the controller.
      if (!Sleep(env, backoff)) return kExitOk;
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
  }
}

}  // namespace

void AddWatchCommand(CLI::App& app, CommandEnv& env) {
  auto options = std::make_shared<WatchOptions>();
  CLI::App* watch = app.add_subcommand(
      "watch",
      "Follow the timeline, each event once and in order; resumes after a controller restart or "
      "when the controller says this watch fell behind");
  watch->add_option("--incident", options->incident, "only this incident's events");
  watch->add_option("--after", options->after,
                    "every event after this sequence number first (0: the whole timeline); "
                    "without it, only new events");
  watch->callback([&env, options, watch] {
    options->after_given = watch->count("--after") > 0;
    env.SetAction([&env, options] { return RunWatch(env, *options); });
  });
}

}  // namespace vigil::cli
