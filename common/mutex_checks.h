// Abseil's mutexes check lock order (a deadlock detector building a graph of every lock ever
// held) unless abseil itself was compiled with NDEBUG, and Debian's libabsl is not. In a release
// build of Vigil those checks cost more than the work they guard (5–12 % of the controller's
// ingest thread in a reconnect storm), so release binaries switch them off at startup; debug and
// sanitizer builds keep them.
#pragma once

namespace vigil {

// Call first thing in main, before any thread starts.
void UseReleaseMutexChecks();

}  // namespace vigil
