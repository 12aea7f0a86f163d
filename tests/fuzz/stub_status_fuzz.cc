// Fuzzes nginx's stub_status parser (agent/collectors/nginx_status_collector.h). Invariant: what
// parses, written back in nginx's layout, parses to the same numbers.
#include <cstddef>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "agent/collectors/nginx_status_collector.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  auto s = vigil::agent::ParseStubStatus(input);
  if (!s.ok()) {
    return 0;
  }
  const std::string text = absl::StrCat(
      "Active connections: ", s->active, " \nserver accepts handled requests\n ", s->accepts, " ",
      s->handled, " ", s->requests, " \nReading: ", s->reading, " Writing: ", s->writing,
      " Waiting: ", s->waiting, " \n");
  auto again = vigil::agent::ParseStubStatus(text);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->active == s->active && again->accepts == s->accepts &&
             again->handled == s->handled && again->requests == s->requests &&
             again->reading == s->reading && again->writing == s->writing &&
             again->waiting == s->waiting);
  return 0;
}
