// Entry point of the `vigil` command: parses the command line (CLI11), runs the chosen verb
// against the controller and returns the exit status of the contract (0 ok, 1 the request
// failed, 2 bad usage). Output goes to the given streams, so tests run it in-process.
// Each call is independent; calls may run concurrently if they use different streams.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "cli/interrupt.h"
#include "common/clock.h"

namespace vigil::cli {

struct CliContext {
  const Clock* clock = nullptr;    // for "5s ago"; null: the real clock
  Interrupt* interrupt = nullptr;  // Ctrl-C; null: commands run until they finish
};

// `args` excludes the program name: {"--controller=127.0.0.1:7443", "agents"}.
int RunCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
           const CliContext& context = {});
// As above, from main()'s arguments (argv[0] is skipped).
int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err,
           const CliContext& context = {});

}  // namespace vigil::cli
