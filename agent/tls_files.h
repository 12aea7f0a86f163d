// Checks the agent's certificate files before they replace the ones in use (on SIGHUP): the CA
// bundle and the certificate parse, and the key is the certificate's. A renewal caught half
// written is refused, so the agent keeps streaming with the old files. Stateless; thread-safe.
#pragma once

#include "absl/status/status.h"
#include "common/transport.h"

namespace vigil::agent {

// OK when --tls-ca, --tls-cert and --tls-key (those given) can be used together; otherwise an
// error naming the file and what is wrong with it.
absl::Status CheckTlsFiles(const TransportFlags& flags);

}  // namespace vigil::agent
