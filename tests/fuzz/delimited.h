// Splits a fuzz input into length-delimited protobuf messages (a varint length, then that many
// bytes: protobuf's "delimited" framing), so that one input can carry several messages. A
// truncated or garbled record ends the sequence. Header-only; used by the harnesses only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "google/protobuf/io/coded_stream.h"

namespace vigil::fuzz {

// Calls f(const uint8_t* bytes, size_t size) for each record, in order, at most `max_records`
// times.
template <typename F>
void ForEachDelimited(const uint8_t* data, size_t size, int max_records, F f) {
  google::protobuf::io::CodedInputStream in(data, static_cast<int>(size));
  for (int i = 0; i < max_records; ++i) {
    uint32_t length = 0;
    if (!in.ReadVarint32(&length)) {
      return;
    }
    const void* bytes = nullptr;
    int available = 0;
    if (length > 0 && (!in.GetDirectBufferPointer(&bytes, &available) ||
                       static_cast<uint32_t>(available) < length)) {
      return;
    }
    f(static_cast<const uint8_t*>(bytes), static_cast<size_t>(length));
    if (!in.Skip(static_cast<int>(length))) {
      return;
    }
  }
}

}  // namespace vigil::fuzz
