#include "agent/collectors/prometheus_text.h"

#include <cmath>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace vigil::agent {
namespace {

bool NameStart(char c) { return absl::ascii_isalpha(c) || c == '_' || c == ':'; }
bool NameChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == ':'; }
bool LabelStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool LabelChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }
bool Blank(char c) { return c == ' ' || c == '\t'; }

// Reads one line's parts; every method leaves `pos_` after what it read.
class LineReader {
 public:
  explicit LineReader(absl::string_view line) : line_(line) {}

  void SkipBlanks() {
    while (pos_ < line_.size() && Blank(line_[pos_])) ++pos_;
  }
  bool AtEnd() const { return pos_ >= line_.size(); }
  char Peek() const { return AtEnd() ? '\0' : line_[pos_]; }
  bool Eat(char c) {
    if (Peek() != c || AtEnd()) return false;
    ++pos_;
    return true;
  }
  absl::string_view MetricName() {
    const size_t start = pos_;
    if (AtEnd() || !NameStart(line_[pos_])) return {};
    while (pos_ < line_.size() && NameChar(line_[pos_])) ++pos_;
    return line_.substr(start, pos_ - start);
  }
  absl::string_view LabelName() {
    const size_t start = pos_;
    if (AtEnd() || !LabelStart(line_[pos_])) return {};
    while (pos_ < line_.size() && LabelChar(line_[pos_])) ++pos_;
    return line_.substr(start, pos_ - start);
  }
  // Up to the next blank or the end.
  absl::string_view Token() {
    const size_t start = pos_;
    while (pos_ < line_.size() && !Blank(line_[pos_])) ++pos_;
    return line_.substr(start, pos_ - start);
  }
  absl::string_view Rest() const { return line_.substr(std::min(pos_, line_.size())); }
  // A quoted label value after its opening quote, unescaped into `out` when `out` is set.
  // Returns an error text, or "" when well-formed.
  std::string QuotedValue(std::string* out) {
    while (pos_ < line_.size()) {
      const char c = line_[pos_++];
      if (c == '"') return "";
      if (c == '\0') return "label value holds a NUL byte";
      if (c != '\\') {
        if (out != nullptr) out->push_back(c);
        continue;
      }
      if (pos_ >= line_.size()) break;
      const char e = line_[pos_++];
      char unescaped;
      switch (e) {
        case '\\':
          unescaped = '\\';
          break;
        case '"':
          unescaped = '"';
          break;
        case 'n':
          unescaped = '\n';
          break;
        default:
          return absl::StrCat("invalid escape sequence '\\", absl::CHexEscape(absl::string_view(&e, 1)),
                              "' in a label value");
      }
      if (out != nullptr) out->push_back(unescaped);
    }
    return "unterminated label value";
  }

 private:
  absl::string_view line_;
  size_t pos_ = 0;
};

// Go's strconv.ParseFloat spellings Prometheus writes: NaN, +Inf, -Inf, Inf and decimals.
bool ParseValue(absl::string_view text, double* out) {
  if (text.empty()) return false;
  if (absl::EqualsIgnoreCase(text, "nan")) {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  absl::string_view unsigned_text = text;
  const bool negative = absl::ConsumePrefix(&unsigned_text, "-");
  if (!negative) absl::ConsumePrefix(&unsigned_text, "+");
  if (absl::EqualsIgnoreCase(unsigned_text, "inf") ||
      absl::EqualsIgnoreCase(unsigned_text, "infinity")) {
    *out = negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
    return true;
  }
  // SimpleAtod would also take surrounding spaces and hex: the token has none of the first, and
  // a decimal digit or '.' must start what remains.
  if (unsigned_text.empty() ||
      !(absl::ascii_isdigit(unsigned_text[0]) || unsigned_text[0] == '.')) {
    return false;
  }
  return absl::SimpleAtod(text, out);
}

bool ParseType(absl::string_view text, PromType* out) {
  static constexpr std::pair<absl::string_view, PromType> kTypes[] = {
      {"counter", PromType::kCounter},     {"gauge", PromType::kGauge},
      {"histogram", PromType::kHistogram}, {"summary", PromType::kSummary},
      {"untyped", PromType::kUntyped}};
  for (const auto& [name, type] : kTypes) {
    if (text == name) {
      *out = type;
      return true;
    }
  }
  return false;
}

std::string UnescapeHelp(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && (text[i + 1] == '\\' || text[i + 1] == 'n')) {
      out.push_back(text[i + 1] == 'n' ? '\n' : '\\');
      ++i;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

class Parser {
 public:
  Parser(PromTextVisitor& visitor, const PromParseLimits& limits)
      : visitor_(visitor), limits_(limits) {}

  PromParseSummary Run(absl::string_view text) {
    if (text.size() > limits_.max_bytes) {
      const size_t cut = text.rfind('\n', limits_.max_bytes);
      text = text.substr(0, cut == absl::string_view::npos ? 0 : cut + 1);
      Error(0, absl::StrCat("text longer than ", limits_.max_bytes,
                            " bytes: read up to the last line within"));
    }
    size_t line_number = 0;
    while (!text.empty()) {
      const size_t nl = text.find('\n');
      absl::string_view line = text.substr(0, nl);
      text = nl == absl::string_view::npos ? absl::string_view() : text.substr(nl + 1);
      ++line_number;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > limits_.max_line_bytes) {
        Error(line_number, absl::StrCat(line.size(), " bytes, longer than the ",
                                        limits_.max_line_bytes, " allowed"));
        continue;
      }
      Line(line_number, line);
    }
    summary_.lines = line_number;
    return std::move(summary_);
  }

 private:
  void Error(size_t line, std::string what) {
    ++summary_.error_count;
    if (summary_.errors.size() < limits_.max_errors) {
      summary_.errors.push_back({line, std::move(what)});
    }
  }

  void Line(size_t number, absl::string_view line) {
    LineReader r(line);
    r.SkipBlanks();
    if (r.AtEnd()) return;
    if (r.Peek() == '#') {
      Comment(number, r);
      return;
    }
    Sample(number, r);
  }

  void Comment(size_t number, LineReader& r) {
    r.Eat('#');
    r.SkipBlanks();
    const absl::string_view keyword = r.Token();
    const bool help = keyword == "HELP";
    if (!help && keyword != "TYPE") return;  // any other comment
    r.SkipBlanks();
    const absl::string_view name = r.MetricName();
    if (name.empty() || !(r.AtEnd() || Blank(r.Peek()))) {
      Error(number, absl::StrCat("# ", keyword, " needs a metric name"));
      return;
    }
    r.SkipBlanks();
    if (help) {
      visitor_.OnHelp(name, UnescapeHelp(r.Rest()));
      return;
    }
    const absl::string_view type_text = r.Token();
    r.SkipBlanks();
    PromType type;
    if (!ParseType(type_text, &type) || !r.AtEnd()) {
      Error(number, absl::StrCat("# TYPE ", name,
                                 ": the type must be one of counter, gauge, histogram, summary, "
                                 "untyped"));
      return;
    }
    if (!types_.emplace(name, type).second) {
      Error(number, absl::StrCat("second # TYPE line for ", name));
      return;
    }
    visitor_.OnType(name, type);
  }

  // The family a sample name belongs to, and its type.
  std::pair<absl::string_view, PromType> FamilyOf(absl::string_view name) const {
    if (auto it = types_.find(name); it != types_.end()) {
      return {name, it->second};
    }
    for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
      if (!absl::EndsWith(name, suffix)) continue;
      const absl::string_view base = name.substr(0, name.size() - suffix.size());
      auto it = types_.find(base);
      if (it != types_.end() && (it->second == PromType::kHistogram ||
                                 (it->second == PromType::kSummary && suffix != "_bucket"))) {
        return {base, it->second};
      }
    }
    return {name, PromType::kUntyped};
  }

  void Sample(size_t number, LineReader& r) {
    const absl::string_view name = r.MetricName();
    if (name.empty()) {
      Error(number, "expected a metric name, a comment or an empty line");
      return;
    }
    const auto [family, type] = FamilyOf(name);
    const bool wanted = visitor_.WantFamily(family);
    labels_.clear();
    bool blank = Blank(r.Peek());
    r.SkipBlanks();
    if (r.Eat('{')) {
      if (std::string what = Labels(r, wanted); !what.empty()) {
        Error(number, absl::StrCat(name, ": ", what));
        return;
      }
      blank = Blank(r.Peek());
    }
    if (!blank) {
      Error(number, absl::StrCat(name, ": expected a blank before the value"));
      return;
    }
    r.SkipBlanks();
    double value = 0;
    const absl::string_view value_text = r.Token();
    if (!ParseValue(value_text, &value)) {
      Error(number, absl::StrCat(name, ": '", absl::CHexEscape(value_text.substr(0, 32)),
                                 "' is not a number"));
      return;
    }
    r.SkipBlanks();
    std::optional<int64_t> timestamp;
    if (!r.AtEnd()) {
      const absl::string_view ts_text = r.Token();
      int64_t ts = 0;
      if (!absl::SimpleAtoi(ts_text, &ts)) {
        Error(number, absl::StrCat(name, ": '", absl::CHexEscape(ts_text.substr(0, 32)),
                                   "' is not a timestamp in milliseconds"));
        return;
      }
      timestamp = ts;
      r.SkipBlanks();
      if (!r.AtEnd()) {
        Error(number, absl::StrCat(name, ": text after the timestamp"));
        return;
      }
    }
    if (++summary_.samples > limits_.max_samples) {
      if (summary_.samples == limits_.max_samples + 1) {
        Error(number, absl::StrCat("more than ", limits_.max_samples,
                                   " samples: the rest are not read"));
      }
      return;
    }
    if (!wanted) return;
    PromSample sample;
    sample.family = family;
    sample.type = type;
    sample.name = name;
    sample.labels = &labels_;
    sample.value = value;
    sample.timestamp_ms = timestamp;
    sample.line = number;
    visitor_.OnSample(sample);
  }

  // After '{': label pairs up to '}'. Copies them into labels_ when `keep`.
  std::string Labels(LineReader& r, bool keep) {
    size_t count = 0;
    while (true) {
      r.SkipBlanks();
      if (r.Eat('}')) return "";
      const absl::string_view label = r.LabelName();
      if (label.empty()) return "expected a label name or '}'";
      r.SkipBlanks();
      if (!r.Eat('=')) return absl::StrCat("expected '=' after label ", label);
      r.SkipBlanks();
      if (!r.Eat('"')) return absl::StrCat("expected a quoted value for label ", label);
      if (++count > limits_.max_labels) {
        return absl::StrCat("more than ", limits_.max_labels, " labels");
      }
      std::string* value = nullptr;
      if (keep) {
        for (const auto& [k, v] : labels_) {
          if (k == label) return absl::StrCat("label ", label, " appears twice");
        }
        labels_.emplace_back(std::string(label), std::string());
        value = &labels_.back().second;
      }
      if (std::string what = r.QuotedValue(value); !what.empty()) {
        return absl::StrCat("label ", label, ": ", what);
      }
      r.SkipBlanks();
      if (r.Eat('}')) return "";
      if (!r.Eat(',')) return "expected ',' or '}' after a label value";
    }
  }

  PromTextVisitor& visitor_;
  const PromParseLimits& limits_;
  PromParseSummary summary_;
  absl::flat_hash_map<absl::string_view, PromType> types_;  // views into the text
  PromLabels labels_;  // the current sample's, reused
};

class FamilyBuilder final : public PromTextVisitor {
 public:
  void OnSample(const PromSample& s) override {
    PromFamily& f = Family(s.family);
    f.type = s.type;
    f.samples.push_back({std::string(s.name), *s.labels, s.value, s.timestamp_ms});
  }
  void OnType(absl::string_view family, PromType type) override { Family(family).type = type; }
  void OnHelp(absl::string_view family, absl::string_view help) override {
    Family(family).help = std::string(help);
  }
  std::vector<PromFamily> families;

 private:
  PromFamily& Family(absl::string_view name) {
    auto [it, added] = index_.try_emplace(std::string(name), families.size());
    if (added) {
      families.emplace_back();
      families.back().name = std::string(name);
    }
    return families[it->second];
  }
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace

absl::string_view PromTypeName(PromType type) {
  switch (type) {
    case PromType::kCounter:
      return "counter";
    case PromType::kGauge:
      return "gauge";
    case PromType::kHistogram:
      return "histogram";
    case PromType::kSummary:
      return "summary";
    case PromType::kUntyped:
      return "untyped";
  }
  return "untyped";
}

PromParseSummary ParsePrometheusText(absl::string_view text, PromTextVisitor& visitor,
                                     const PromParseLimits& limits) {
  return Parser(visitor, limits).Run(text);
}

PromParseResult ParsePrometheusFamilies(absl::string_view text, const PromParseLimits& limits) {
  FamilyBuilder builder;
  PromParseResult result;
  result.summary = ParsePrometheusText(text, builder, limits);
  result.families = std::move(builder.families);
  return result;
}

bool ParsePromValue(absl::string_view text, double* out) { return ParseValue(text, out); }

bool IsPromMetricName(absl::string_view name) {
  if (name.empty() || !NameStart(name[0])) return false;
  for (char c : name) {
    if (!NameChar(c)) return false;
  }
  return true;
}

bool IsPromLabelName(absl::string_view name) {
  if (name.empty() || !LabelStart(name[0])) return false;
  for (char c : name) {
    if (!LabelChar(c)) return false;
  }
  return true;
}

}  // namespace vigil::agent
