// Fuzzes the HTTP layer's parsers (common/http): the request head and its body length, which
// face anyone who reaches the controller's HTTP port, and the client's response and chunked
// decoders, which face whatever a probe or a notification receiver answers.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/http/http_client.h"
#include "common/http/request_parser.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  vigil::http::HttpRequest request;
  if (auto error = vigil::http::ParseRequestHead(input, &request); !error.has_value()) {
    FUZZ_CHECK(!request.method.empty());
    uint64_t length = 0;
    if (!vigil::http::RequestBodyLength(request, 4 << 20, &length).has_value()) {
      FUZZ_CHECK(length <= (4u << 20));
    }
  } else {
    FUZZ_CHECK(error->status >= 400 && error->status < 600);
  }
  (void)vigil::http::ParseHttpResponse(input);
  if (auto decoded = vigil::http::DecodeChunked(input); decoded.ok()) {
    FUZZ_CHECK(decoded->size() <= input.size());
  }
  return 0;
}
