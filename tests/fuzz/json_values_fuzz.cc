// Fuzzes the http_json path from bytes to gauges and tables (agent/collectors/json_values.h): the
// first line is a JSON pointer, the rest a JSON document. The pointer is parsed and evaluated; the
// document is read as gauges (the value at the pointer, and one per element of what it names) and
// as a table whose rows are what it names. Invariants: bounds hold (elements, rows, cell bytes),
// every cell is valid UTF-8, and a value read as a number is finite.
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "agent/collectors/json_values.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using vigil::agent::Collection;
using vigil::agent::JsonColumnSpec;
using vigil::agent::JsonGaugeSpec;
using vigil::agent::JsonTableSpec;

bool ValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  const absl::string_view pointer_text = input.substr(0, nl);
  const absl::string_view document =
      nl == absl::string_view::npos ? absl::string_view() : input.substr(nl + 1);

  auto tokens = vigil::agent::ParseJsonPointer(pointer_text);
  if (tokens.ok()) {
    FUZZ_CHECK(tokens->size() <= vigil::agent::kMaxPointerTokens);
  }
  auto root = vigil::agent::ParseJsonDocument(document, "fuzz", 64 * 1024);
  if (!root.ok() || !tokens.ok()) {
    return 0;
  }
  if (const auto* v = vigil::agent::EvaluateJsonPointer(*root, *tokens); v != nullptr) {
    auto n = vigil::agent::JsonValueAsNumber(*v);
    if (n.ok()) FUZZ_CHECK(std::isfinite(*n));
    const std::string cell = vigil::agent::JsonValueAsCell(*v, 40);
    FUZZ_CHECK(cell.size() <= 40);
    FUZZ_CHECK(ValidUtf8(cell));
  }

  Collection out;
  JsonGaugeSpec plain;
  plain.metric = "fuzz_value";
  plain.pointer = *tokens;
  plain.scale = 1e-6;
  (void)vigil::agent::ExtractJsonGauges(*root, plain, {{"endpoint", "f"}}, out);
  FUZZ_CHECK(out.gauges.size() <= 1);

  JsonGaugeSpec each;
  each.metric = "fuzz_each";
  each.each = true;
  each.each_pointer = *tokens;
  each.label = "key";
  each.key_is_name = false;
  each.key = {"name"};
  each.max_elements = 5;
  const size_t before = out.gauges.size();
  auto errors = vigil::agent::ExtractJsonGauges(*root, each, {}, out);
  FUZZ_CHECK(out.gauges.size() - before <= 5);
  FUZZ_CHECK(errors.size() <= 10);
  each.key_is_name = true;
  (void)vigil::agent::ExtractJsonGauges(*root, each, {}, out);
  for (const auto& g : out.gauges) {
    FUZZ_CHECK(std::isfinite(g.value));
    for (const auto& [k, v] : g.labels) FUZZ_CHECK(ValidUtf8(v));
  }

  JsonTableSpec table;
  table.name = "fuzz_table";
  table.rows = *tokens;
  table.max_rows = 7;
  table.max_cell_bytes = 32;
  table.columns = {JsonColumnSpec{"whole", {}}, JsonColumnSpec{"name", {"name"}},
                   JsonColumnSpec{"first", {"0"}, true}, JsonColumnSpec{"scaled", {"n"}, false, 1e-6}};
  const auto t = vigil::agent::ExtractJsonTable(*root, table);
  FUZZ_CHECK(t.rows_size() <= 7);
  for (const auto& row : t.rows()) {
    FUZZ_CHECK(row.cells_size() == 4);
    for (const auto& cell : row.cells()) {
      FUZZ_CHECK(cell.size() <= 32);
      FUZZ_CHECK(ValidUtf8(cell));
    }
  }
  return 0;
}
