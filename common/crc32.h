// CRC-32 (IEEE 802.3, the polynomial zlib and gzip use), for checksummed files: the agent's
// command journal and every record file. Pure; thread-safe.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"

namespace vigil {

// CRC-32 of `data`; Crc32("123456789") == 0xCBF43926.
uint32_t Crc32(absl::string_view data);

}  // namespace vigil
