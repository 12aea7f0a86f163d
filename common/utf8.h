// UTF-8 decoding and the code points that must never reach a terminal or a page as they are,
// shared by the CLI's output and the incident reports. Pure; thread-safe.
#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"

namespace vigil {

// The length of the well-formed UTF-8 sequence at the start of `text` (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF) and its code point; 0 when malformed or empty.
size_t DecodeUtf8(absl::string_view text, char32_t* code_point);

// Code points that a terminal or a renderer acts on, or that reorder what is shown: C0 and C1
// controls, DEL, the line and paragraph separators, the bidirectional embeddings, overrides and
// isolates.
bool IsHiddenControl(char32_t c);

}  // namespace vigil
