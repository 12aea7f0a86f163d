// vigil: the incident commander's CLI. All the work is in RunCli(); this file turns Ctrl-C into
// an orderly stop (a watch exits 0) instead of killing the process mid-write.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "cli/cli.h"
#include "cli/interrupt.h"
#include "common/mutex_checks.h"

int main(int argc, char** argv) {
  vigil::UseReleaseMutexChecks();
  // Block SIGINT/SIGTERM before any thread starts, so only the waiter below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  static vigil::cli::Interrupt interrupt;
  std::thread([signals] {
    int received = 0;
    sigwait(&signals, &received);
    interrupt.Trigger();
    sigwait(&signals, &received);  // a second Ctrl-C: the user really wants out
    _exit(130);
  }).detach();

  vigil::cli::CliContext context;
  context.interrupt = &interrupt;
  int status = vigil::cli::RunCli(argc, argv, std::cout, std::cerr, context);
  std::cout.flush();
  std::cerr.flush();
  // The signal thread is still waiting; leave without running static destructors under it.
  _exit(status);
}
