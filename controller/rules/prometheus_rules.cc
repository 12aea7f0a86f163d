#include "controller/rules/prometheus_rules.h"

#include <re2/re2.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/metric_schema.h"
#include "common/yaml_util.h"

namespace vigil::controller {
namespace {

// ---- the PromQL subset ----

struct Token {
  enum Kind { kEnd, kIdent, kNumber, kString, kPunct, kBad };
  Kind kind = kEnd;
  absl::string_view text;  // as written (a string with its quotes)
  size_t pos = 0;
  std::string value;  // a string's value, escapes resolved
};

struct Matcher {
  std::string label;
  size_t label_pos = 0;
  std::string op;
  size_t op_pos = 0;
  std::string value;
  size_t value_pos = 0;
};

struct Selector {
  std::string name;
  size_t name_pos = 0;
  std::vector<Matcher> matchers;
};

// Vigil text with, per byte, the PromQL byte it comes from.
struct Fragment {
  std::string text;
  std::vector<size_t> offsets;

  void Add(absl::string_view s, size_t pos) {
    text.append(s.data(), s.size());
    offsets.insert(offsets.end(), s.size(), pos);
  }
  // Copied as written: each byte keeps its own position.
  void Copy(absl::string_view s, size_t pos) {
    text.append(s.data(), s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      offsets.push_back(pos + i);
    }
  }
  void Append(const Fragment& other) {
    text += other.text;
    offsets.insert(offsets.end(), other.offsets.begin(), other.offsets.end());
  }
};

bool IsAggregation(absl::string_view word) {
  return word == "sum" || word == "avg" || word == "min" || word == "max" || word == "count";
}

bool IsOtherAggregation(absl::string_view word) {
  for (absl::string_view w : {"topk", "bottomk", "quantile", "stddev", "stdvar", "count_values",
                              "group", "limitk", "limit_ratio"}) {
    if (word == w) {
      return true;
    }
  }
  return false;
}

bool IsSetOperator(absl::string_view word) {
  return word == "and" || word == "or" || word == "unless";
}

bool IsComparison(absl::string_view text) {
  return text == ">" || text == ">=" || text == "<" || text == "<=" || text == "==" || text == "!=";
}

bool IsLabelName(absl::string_view name) {
  return !name.empty() &&
         RE2::FullMatch(re2::StringPiece(name.data(), name.size()), "[A-Za-z_][A-Za-z0-9_]*");
}

// Labels a request counter or histogram carries in the application but the built-in collectors'
// series do not: a matcher on them after a name map onto the schema would match nothing,
// silently.
bool IsRequestLabel(absl::string_view label) {
  return label == "status" || label == "code" || label == "method" || label == "handler" ||
         label == "path" || label == "route" || label == "endpoint" || label == "le";
}

class Translator {
 public:
  Translator(absl::string_view text, const PromNameMap& names) : text_(text), names_(names) {}

  PromTranslation Run() {
    PromTranslation out;
    Fragment expr;
    if (!ParseTop(expr)) {
      out.status = absl::InvalidArgumentError(error_);
      out.error_offset = std::min(error_pos_, text_.size());
      return out;
    }
    out.vigil = std::move(expr.text);
    out.offsets = std::move(expr.offsets);
    out.window = window_;
    out.renamed = std::move(renamed_);
    return out;
  }

 private:
  // -- lexing: one token at a time from pos_ --

  void SkipSpace() {
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++pos_;
      } else if (c == '#') {  // a PromQL comment runs to the end of the line
        while (pos_ < text_.size() && text_[pos_] != '\n') {
          ++pos_;
        }
      } else {
        return;
      }
    }
  }

  Token Lex(size_t& at) const {
    Token t;
    t.pos = at;
    if (at >= text_.size()) {
      return t;
    }
    const char c = text_[at];
    auto is_ident = [](char ch, bool first) {
      return std::isalpha(static_cast<unsigned char>(ch)) || ch == '_' || ch == ':' ||
             (!first && std::isdigit(static_cast<unsigned char>(ch)));
    };
    size_t end = at;
    if (is_ident(c, true)) {
      t.kind = Token::kIdent;
      while (end < text_.size() && is_ident(text_[end], false)) {
        ++end;
      }
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '.' && at + 1 < text_.size() &&
                std::isdigit(static_cast<unsigned char>(text_[at + 1])))) {
      t.kind = Token::kNumber;
      while (end < text_.size()) {
        const char d = text_[end];
        const bool exponent_sign =
            (d == '+' || d == '-') && end > at && (text_[end - 1] == 'e' || text_[end - 1] == 'E');
        if (!std::isalnum(static_cast<unsigned char>(d)) && d != '.' && !exponent_sign) {
          break;
        }
        ++end;
      }
    } else if (c == '"' || c == '\'' || c == '`') {
      t.kind = Token::kString;
      end = at + 1;
      while (end < text_.size() && text_[end] != c) {
        if (c != '`' && text_[end] == '\\' && end + 1 < text_.size()) {
          const char e = text_[end + 1];
          switch (e) {
            case 'n':
              t.value += '\n';
              break;
            case 't':
              t.value += '\t';
              break;
            default:
              t.value += e;  // \" \' \\ and a regex's own escapes keep their character
              if (e != '"' && e != '\'' && e != '\\') {
                t.value.insert(t.value.size() - 1, 1, '\\');
              }
          }
          end += 2;
          continue;
        }
        t.value += text_[end];
        ++end;
      }
      if (end >= text_.size()) {
        t.kind = Token::kBad;
        t.text = text_.substr(at);
        return t;
      }
      ++end;
    } else {
      t.kind = Token::kPunct;
      end = at + 1;
      static constexpr absl::string_view kTwo[] = {"==", "!=", ">=", "<=", "=~", "!~"};
      for (absl::string_view two : kTwo) {
        if (absl::StartsWith(text_.substr(at), two)) {
          end = at + 2;
          break;
        }
      }
      if (end == at + 1 && !absl::StrContains("(){}[],+-*/%^><=@:", c)) {
        t.kind = Token::kBad;
      }
    }
    t.text = text_.substr(at, end - at);
    return t;
  }

  Token Peek() {
    SkipSpace();
    size_t at = pos_;
    return Lex(at);
  }

  // The token after the next one (to tell `name(` from `name`).
  Token PeekSecond() {
    SkipSpace();
    size_t at = pos_;
    Token first = Lex(at);
    at = first.pos + first.text.size();
    while (at < text_.size() && std::isspace(static_cast<unsigned char>(text_[at]))) {
      ++at;
    }
    return Lex(at);
  }

  Token Next() {
    Token t = Peek();
    pos_ = t.pos + t.text.size();
    return t;
  }

  bool PeekIs(absl::string_view punct) {
    Token t = Peek();
    return (t.kind == Token::kPunct || t.kind == Token::kIdent) && t.text == punct;
  }

  bool Fail(size_t pos, std::string message) {
    if (error_.empty()) {
      error_pos_ = pos;
      error_ = std::move(message);
    }
    return false;
  }

  static std::string Describe(const Token& t) {
    if (t.kind == Token::kEnd) {
      return "the end of the expression";
    }
    return absl::StrCat("'", t.text.substr(0, 24), "'");
  }

  bool Expect(absl::string_view punct, absl::string_view why) {
    Token t = Peek();
    if (t.kind != Token::kPunct || t.text != punct) {
      return Fail(t.pos, absl::StrCat("expected '", punct, "' ", why, ", found ", Describe(t)));
    }
    Next();
    return true;
  }

  // -- parsing --

  bool ParseTop(Fragment& out) {
    if (!ParseOperand(out)) {
      return false;
    }
    Token t = Peek();
    if (t.kind == Token::kPunct && t.text == "/") {
      Next();
      Token modifier = Peek();
      if (modifier.kind == Token::kIdent &&
          (modifier.text == "on" || modifier.text == "ignoring" || modifier.text == "group_left" ||
           modifier.text == "group_right" || modifier.text == "bool")) {
        return Fail(modifier.pos,
                    absl::StrCat("vector matching modifier '", modifier.text,
                                 "' is not supported: divide two aggregations with the same "
                                 "'by (...)' labels"));
      }
      Fragment rhs;
      if (!ParseOperand(rhs)) {
        return false;
      }
      out.Add(" / ", t.pos);
      out.Append(rhs);
      t = Peek();
    }
    if ((t.kind == Token::kPunct && absl::StrContains("+-*/%^", t.text) && t.text.size() == 1) ||
        (t.kind == Token::kIdent && IsSetOperator(t.text))) {
      return Fail(t.pos, absl::StrCat("operator '", t.text,
                                      "' is not supported (one '/' and a comparison with a "
                                      "number are)"));
    }
    if (t.kind == Token::kEnd) {
      return Fail(t.pos, "an alerting rule needs a comparison with a number (e.g. '> 2')");
    }
    if (t.kind != Token::kPunct || !IsComparison(t.text)) {
      return Fail(
          t.pos, absl::StrCat("expected a comparison (>, >=, <, <=, ==, !=), found ", Describe(t)));
    }
    Next();
    if (Token b = Peek(); b.kind == Token::kIdent && b.text == "bool") {
      return Fail(b.pos,
                  "the 'bool' modifier is not supported: an alert fires where the "
                  "comparison holds");
    }
    out.Add(absl::StrCat(" ", t.text, " "), t.pos);
    Token number = Peek();
    std::string sign;
    if (number.kind == Token::kPunct && (number.text == "-" || number.text == "+")) {
      Next();
      sign = std::string(number.text);
      const size_t sign_pos = number.pos;
      number = Peek();
      if (number.kind != Token::kNumber) {
        return Fail(sign_pos, absl::StrCat("a comparison with ", Describe(number),
                                           " is not supported: compare with a number"));
      }
      out.Add(sign, sign_pos);
    }
    if (number.kind != Token::kNumber) {
      return Fail(number.pos, absl::StrCat("a comparison with ", Describe(number),
                                           " is not supported: compare with a number"));
    }
    Next();
    out.Copy(number.text, number.pos);
    Token rest = Peek();
    if (rest.kind == Token::kEnd) {
      return true;
    }
    if (rest.kind == Token::kIdent && IsSetOperator(rest.text)) {
      return Fail(rest.pos, absl::StrCat("operator '", rest.text, "' is not supported"));
    }
    if (rest.kind == Token::kPunct && IsComparison(rest.text)) {
      return Fail(rest.pos, "a second comparison is not supported");
    }
    if (rest.kind == Token::kPunct && absl::StrContains("+-*/%^", rest.text)) {
      return Fail(rest.pos, absl::StrCat("operator '", rest.text,
                                         "' after the threshold is not "
                                         "supported: the threshold is one number"));
    }
    return Fail(rest.pos, absl::StrCat("unexpected ", Describe(rest), " after the threshold"));
  }

  // An aggregation, histogram_quantile(), rate()/irate() or a selector.
  bool ParseOperand(Fragment& out) {
    Token t = Peek();
    if (t.kind == Token::kPunct && t.text == "(") {
      Next();
      if (!ParseOperand(out)) {
        return false;
      }
      return Expect(")", "to close the parenthesis");
    }
    if (t.kind == Token::kIdent) {
      if (IsAggregation(t.text)) {
        return ParseAggregation(out);
      }
      if (t.text == "histogram_quantile") {
        return ParseHistogramQuantile(out);
      }
    }
    return ParseSeries(out, /*under_aggregation=*/false);
  }

  // What an aggregation may hold: rate()/irate() or a selector.
  bool ParseSeries(Fragment& out, bool under_aggregation) {
    Token t = Peek();
    if (t.kind == Token::kIdent) {
      if (IsAggregation(t.text)) {
        return Fail(t.pos, absl::StrCat("a nested aggregation ('", t.text,
                                        "' inside another) is not supported"));
      }
      if (t.text == "histogram_quantile") {
        return Fail(t.pos,
                    "an aggregation of histogram_quantile() is not supported: group the "
                    "quantile inside it, histogram_quantile(q, sum by (le, LABELS) (...))");
      }
      if (IsOtherAggregation(t.text)) {
        return Fail(t.pos, absl::StrCat("aggregation '", t.text,
                                        "' is not supported (sum, avg, min, max and count are)"));
      }
      if (t.text == "rate" || t.text == "irate") {
        return ParseRate(out);
      }
      if (Token after = PeekSecond(); after.kind == Token::kPunct && after.text == "(") {
        return Fail(t.pos, absl::StrCat("function '", t.text,
                                        "' is not supported (rate, irate, histogram_quantile "
                                        "and sum, avg, min, max, count are)"));
      }
      if (t.text == "by" || t.text == "without" || t.text == "offset" || t.text == "bool" ||
          t.text == "on" || t.text == "ignoring" || IsSetOperator(t.text)) {
        return Fail(t.pos, absl::StrCat("unexpected '", t.text, "' where a series is expected"));
      }
      Selector selector;
      if (!ParseSelector(selector) || !RefuseModifiers("a selector")) {
        return false;
      }
      if (Token range = Peek(); range.kind == Token::kPunct && range.text == "[") {
        return Fail(range.pos, "a range [...] outside rate()/irate() is not supported");
      }
      if (absl::EndsWith(selector.name, "_bucket")) {
        return Fail(selector.name_pos,
                    absl::StrCat("'", selector.name,
                                 "' outside histogram_quantile() is not supported: Vigil keeps a "
                                 "histogram whole (write histogram_quantile(q, sum by (le) "
                                 "(rate(",
                                 selector.name, "[5m]))))"));
      }
      if (absl::EndsWith(selector.name, "_total")) {
        return Fail(
            selector.name_pos,
            absl::StrCat("'", selector.name, "' is a counter: compare its rate, rate(",
                         selector.name, "[5m]) (Vigil receives counters as per-second rates)"));
      }
      return EmitSelector(selector, /*histogram=*/false, out);
    }
    if (t.kind == Token::kPunct && t.text == "{") {
      return Fail(t.pos, "a selector without a metric name ({...} alone) is not supported");
    }
    if (t.kind == Token::kPunct && t.text == "(" && under_aggregation) {
      Next();
      if (!ParseSeries(out, under_aggregation)) {
        return false;
      }
      return Expect(")", "to close the parenthesis");
    }
    if (t.kind == Token::kNumber) {
      return Fail(t.pos, "a number where a series is expected: write `series op number`");
    }
    if (t.kind == Token::kPunct && (t.text == "-" || t.text == "+")) {
      return Fail(t.pos, absl::StrCat("unary '", t.text, "' is not supported"));
    }
    if (t.kind == Token::kBad) {
      return Fail(t.pos, absl::StrCat("cannot read ", Describe(t)));
    }
    return Fail(t.pos, absl::StrCat("expected a series, found ", Describe(t)));
  }

  // `offset` and `@` after a selector or a range.
  bool RefuseModifiers(absl::string_view after) {
    Token t = Peek();
    if (t.kind == Token::kIdent && t.text == "offset") {
      return Fail(t.pos, absl::StrCat("the 'offset' modifier (after ", after,
                                      ") is not supported: rules judge the newest samples"));
    }
    if (t.kind == Token::kPunct && t.text == "@") {
      return Fail(t.pos, absl::StrCat("the '@' modifier (after ", after,
                                      ") is not supported: rules judge the newest samples"));
    }
    return true;
  }

  // `by (a, b)`, the word already read.
  bool ParseLabelList(std::vector<std::pair<std::string, size_t>>& labels) {
    if (!Expect("(", "after 'by'")) {
      return false;
    }
    if (PeekIs(")")) {
      Next();
      return true;
    }
    while (true) {
      Token label = Peek();
      if (label.kind != Token::kIdent || !IsLabelName(label.text)) {
        return Fail(label.pos,
                    absl::StrCat("expected a label name in 'by (...)', found ", Describe(label)));
      }
      Next();
      labels.emplace_back(std::string(label.text), label.pos);
      Token sep = Next();
      if (sep.kind == Token::kPunct && sep.text == ")") {
        return true;
      }
      if (sep.kind != Token::kPunct || sep.text != ",") {
        return Fail(sep.pos,
                    absl::StrCat("expected ',' or ')' in 'by (...)', found ", Describe(sep)));
      }
      if (PeekIs(")")) {  // PromQL allows a trailing comma
        Next();
        return true;
      }
    }
  }

  // `by (...)` or `without (...)` before or after the aggregation's parenthesis.
  bool ParseGrouping(bool& has_by, std::vector<std::pair<std::string, size_t>>& by) {
    Token t = Peek();
    if (t.kind == Token::kIdent && t.text == "without") {
      return Fail(t.pos, "'without' is not supported: name the labels to keep with 'by (...)'");
    }
    if (t.kind == Token::kIdent && t.text == "by") {
      if (has_by) {
        return Fail(t.pos, "'by' is given twice");
      }
      Next();
      has_by = true;
      return ParseLabelList(by);
    }
    return true;
  }

  static void AddBy(const std::vector<std::pair<std::string, size_t>>& by, size_t pos,
                    Fragment& out) {
    out.Add(" by (", pos);
    for (size_t i = 0; i < by.size(); ++i) {
      if (i > 0) {
        out.Add(", ", by[i].second);
      }
      out.Copy(by[i].first, by[i].second);
    }
    out.Add(") ", pos);
  }

  bool ParseAggregation(Fragment& out) {
    Token agg = Next();
    bool has_by = false;
    std::vector<std::pair<std::string, size_t>> by;
    if (!ParseGrouping(has_by, by)) {
      return false;
    }
    if (!Expect("(", absl::StrCat("after '", agg.text, "'"))) {
      return false;
    }
    Fragment inner;
    if (!ParseSeries(inner, /*under_aggregation=*/true) ||
        !Expect(")", absl::StrCat("to close '", agg.text, "('")) || !ParseGrouping(has_by, by)) {
      return false;
    }
    out.Copy(agg.text, agg.pos);
    if (by.empty()) {  // `sum by () (x)` is sum(x)
      out.Add("(", agg.pos);
    } else {
      AddBy(by, agg.pos, out);
      out.Add("(", agg.pos);
    }
    out.Append(inner);
    out.Add(")", agg.pos);
    return true;
  }

  // rate(x{...}[r]) or irate(...): copied, the range checked by ParseExpression.
  bool ParseRate(Fragment& out) {
    Token fn = Next();
    if (!Expect("(", absl::StrCat("after '", fn.text, "'"))) {
      return false;
    }
    Selector selector;
    absl::string_view range;
    size_t range_pos = 0;
    if (!ParseRangeArgument(fn.text, selector, range, range_pos)) {
      return false;
    }
    if (absl::EndsWith(selector.name, "_bucket")) {
      return Fail(selector.name_pos,
                  absl::StrCat("rate() of '", selector.name,
                               "' outside histogram_quantile() is not supported: Vigil keeps a "
                               "histogram whole"));
    }
    out.Copy(fn.text, fn.pos);
    out.Add("(", fn.pos);
    if (!EmitSelector(selector, /*histogram=*/false, out)) {
      return false;
    }
    out.Add("[", range_pos);
    out.Copy(range, range_pos);
    out.Add("])", range_pos);
    return true;
  }

  // `x{...}[r])` inside rate( or irate(, through the closing parenthesis.
  bool ParseRangeArgument(absl::string_view fn, Selector& selector, absl::string_view& range,
                          size_t& range_pos) {
    Token t = Peek();
    if (t.kind != Token::kIdent || IsAggregation(t.text) || PeekSecond().text == "(") {
      if (t.kind == Token::kIdent || (t.kind == Token::kPunct && t.text == "(")) {
        return Fail(t.pos, absl::StrCat(fn, "() of an expression (a subquery) is not supported: ",
                                        fn, "() takes a selector and a range, ", fn, "(x[5m])"));
      }
      return Fail(t.pos, absl::StrCat("expected a metric inside ", fn, "(), found ", Describe(t)));
    }
    if (!ParseSelector(selector) || !RefuseModifiers("a selector")) {
      return false;
    }
    Token open = Peek();
    if (open.kind != Token::kPunct || open.text != "[") {
      return Fail(open.pos, absl::StrCat(fn, "(", selector.name, ") needs a range: ", fn, "(",
                                         selector.name, "[5m])"));
    }
    Next();
    const size_t close = text_.find(']', pos_);
    if (close == absl::string_view::npos) {
      return Fail(open.pos, absl::StrCat("unterminated range in ", fn, "()"));
    }
    absl::string_view inside = text_.substr(pos_, close - pos_);
    if (size_t colon = inside.find(':'); colon != absl::string_view::npos) {
      return Fail(pos_ + colon, "a subquery ([range:step]) is not supported");
    }
    const size_t lead = inside.find_first_not_of(" \t\r\n");
    range_pos = pos_ + (lead == absl::string_view::npos ? 0 : lead);
    range = absl::StripAsciiWhitespace(inside);
    pos_ = close + 1;
    if (!RefuseModifiers("a range")) {
      return false;
    }
    return Expect(")", absl::StrCat("to close '", fn, "('"));
  }

  bool ParseSelector(Selector& selector) {
    Token name = Next();
    if (name.kind != Token::kIdent) {
      return Fail(name.pos, absl::StrCat("expected a metric name, found ", Describe(name)));
    }
    if (absl::StrContains(name.text, ':')) {
      return Fail(name.pos + name.text.find(':'),
                  absl::StrCat("metric '", name.text,
                               "': names with ':' (recording rules' output) are not supported"));
    }
    selector.name = std::string(name.text);
    selector.name_pos = name.pos;
    if (!PeekIs("{")) {
      return true;
    }
    Next();
    while (true) {
      if (PeekIs("}")) {
        Next();
        return true;
      }
      Token label = Next();
      if (label.kind != Token::kIdent || !IsLabelName(label.text)) {
        return Fail(label.pos,
                    absl::StrCat("expected a label name in {...}, found ", Describe(label)));
      }
      if (label.text == "__name__") {
        return Fail(label.pos, "a matcher on __name__ is not supported: name the metric");
      }
      Token op = Next();
      if (op.kind != Token::kPunct ||
          (op.text != "=" && op.text != "!=" && op.text != "=~" && op.text != "!~")) {
        return Fail(op.pos, absl::StrCat("expected =, !=, =~ or !~ after label '", label.text,
                                         "', found ", Describe(op)));
      }
      Token value = Next();
      if (value.kind != Token::kString) {
        return Fail(value.pos, absl::StrCat("expected a quoted value for label '", label.text,
                                            "', found ", Describe(value)));
      }
      if (absl::StrContains(value.value, '"')) {
        return Fail(value.pos, absl::StrCat("a label value with '\"' is not supported (label '",
                                            label.text, "')"));
      }
      selector.matchers.push_back({std::string(label.text), label.pos, std::string(op.text), op.pos,
                                   value.value, value.pos});
      Token sep = Peek();
      if (sep.kind == Token::kPunct && sep.text == ",") {
        Next();
      } else if (sep.kind != Token::kPunct || sep.text != "}") {
        return Fail(sep.pos, absl::StrCat("expected ',' or '}' in the label matchers, found ",
                                          Describe(sep)));
      }
    }
  }

  // The selector in Vigil's form, through the name map. `histogram`: the name is a histogram's
  // base name (its `_bucket` already taken off).
  bool EmitSelector(const Selector& selector, bool histogram, Fragment& out) {
    std::string name = selector.name;
    if (histogram) {
      name.resize(name.size() - std::string_view("_bucket").size());
    }
    if (auto it = names_.find(name); it != names_.end()) {
      for (const Matcher& m : selector.matchers) {
        if (IsRequestLabel(m.label) && FindMetric(it->second) != nullptr) {
          return Fail(m.label_pos,
                      absl::StrCat("a matcher on '", m.label, "' is not supported on '", name,
                                   "', which is read as '", it->second,
                                   "' (the name map): that metric has no such label",
                                   m.label == "status" || m.label == "code"
                                       ? " (the share of 5xx answers is nginx_error_ratio)"
                                       : ""));
        }
      }
      renamed_.emplace_back(name, it->second);
      out.Add(it->second, selector.name_pos);
    } else {
      out.Copy(name, selector.name_pos);
    }
    if (selector.matchers.empty()) {
      return true;
    }
    out.Add("{", selector.name_pos);
    for (size_t i = 0; i < selector.matchers.size(); ++i) {
      const Matcher& m = selector.matchers[i];
      if (i > 0) {
        out.Add(", ", m.label_pos);
      }
      out.Copy(m.label, m.label_pos);
      out.Copy(m.op, m.op_pos);
      out.Add("\"", m.value_pos);
      out.Add(m.value, m.value_pos + 1);
      out.Add("\"", m.value_pos);
    }
    out.Add("}", selector.name_pos);
    return true;
  }

  // histogram_quantile(q, sum by (le, ...) (rate(x_bucket{...}[r]))) -> pNN by (...) (x{...});
  // histogram_quantile(q, rate(x_bucket{...}[r])) -> pNN(x{...}). Either way the window is r.
  bool ParseHistogramQuantile(Fragment& out) {
    Token fn = Next();
    if (!Expect("(", "after 'histogram_quantile'")) {
      return false;
    }
    Token q = Next();
    double quantile = 0;
    if (q.kind != Token::kNumber || !absl::SimpleAtod(q.text, &quantile)) {
      return Fail(q.pos, absl::StrCat("histogram_quantile's first argument must be a number "
                                      "(the quantile), found ",
                                      Describe(q)));
    }
    const double percent = quantile * 100;
    const long long nn = std::llround(percent);
    if (!std::isfinite(percent) || std::fabs(percent - static_cast<double>(nn)) > 1e-6 || nn < 1 ||
        nn > 99) {
      return Fail(q.pos, absl::StrCat("quantile ", q.text,
                                      " is not a whole percentage from 0.01 to 0.99 (Vigil's "
                                      "quantiles are p01 to p99)"));
    }
    if (!Expect(",", "after the quantile")) {
      return false;
    }
    int parens = 0;
    while (PeekIs("(")) {
      Next();
      ++parens;
    }
    Token agg = Peek();
    bool summed = false;
    bool has_by = false;
    std::vector<std::pair<std::string, size_t>> by;
    if (agg.kind == Token::kIdent && IsAggregation(agg.text)) {
      if (agg.text != "sum") {
        return Fail(agg.pos, absl::StrCat("histogram_quantile over '", agg.text,
                                          "' is not supported: the buckets must be summed, "
                                          "sum by (le) (rate(x_bucket[5m]))"));
      }
      Next();
      summed = true;
      if (!ParseGrouping(has_by, by) || !Expect("(", "after 'sum'")) {
        return false;
      }
    }
    Token inner = Peek();
    if (inner.kind != Token::kIdent || (inner.text != "rate" && inner.text != "irate")) {
      if (inner.kind == Token::kIdent && absl::EndsWith(inner.text, "_bucket") &&
          PeekSecond().text != "(") {
        return Fail(inner.pos, absl::StrCat("histogram_quantile over '", inner.text,
                                            "' without rate() is not supported: write rate(",
                                            inner.text, "[5m]) (its range is the window)"));
      }
      return Fail(inner.pos, absl::StrCat("histogram_quantile needs rate(x_bucket[range]) ",
                                          summed ? "inside its sum" : "as its second argument",
                                          ", found ", Describe(inner)));
    }
    if (inner.text == "irate") {
      return Fail(inner.pos, "irate() under histogram_quantile is not supported: write rate()");
    }
    Next();
    if (!Expect("(", "after 'rate'")) {
      return false;
    }
    Selector selector;
    absl::string_view range;
    size_t range_pos = 0;
    if (!ParseRangeArgument("rate", selector, range, range_pos)) {
      return false;
    }
    if (summed && (!Expect(")", "to close 'sum('") || !ParseGrouping(has_by, by))) {
      return false;
    }
    for (; parens > 0; --parens) {
      if (!Expect(")", "to close the parenthesis")) {
        return false;
      }
    }
    if (!Expect(")", "to close 'histogram_quantile('")) {
      return false;
    }
    if (!absl::EndsWith(selector.name, "_bucket") || selector.name == "_bucket") {
      return Fail(selector.name_pos,
                  absl::StrCat("histogram_quantile reads a histogram's '_bucket' series; '",
                               selector.name, "' is not one"));
    }
    for (const Matcher& m : selector.matchers) {
      if (m.label == "le") {
        return Fail(m.label_pos,
                    "a matcher on 'le' under histogram_quantile is not supported: "
                    "Vigil keeps the histogram whole");
      }
    }
    std::vector<std::pair<std::string, size_t>> others;
    bool has_le = false;
    for (const auto& label : by) {
      if (label.first == "le") {
        has_le = true;
      } else {
        others.push_back(label);
      }
    }
    if (summed && !has_le) {
      return Fail(agg.pos,
                  "histogram_quantile needs the buckets summed by le: "
                  "sum by (le) (rate(x_bucket[5m])) (missing 'le')");
    }
    absl::StatusOr<absl::Duration> window = ParseDurationText(range);
    if (!window.ok() || *window < absl::Seconds(1) || *window > kMaxRange) {
      return Fail(range_pos, absl::StrCat("range '", range,
                                          "' of histogram_quantile is the "
                                          "rule's window: it must be a duration from 1s to ",
                                          absl::FormatDuration(kMaxRange)));
    }
    if (window_.has_value() && *window_ != *window) {
      return Fail(range_pos,
                  absl::StrCat("range '", range,
                               "' differs from the other quantile's "
                               "(",
                               absl::FormatDuration(*window_), "): a rule has one window"));
    }
    window_ = *window;
    out.Add(absl::StrCat("p", nn < 10 ? "0" : "", nn), fn.pos);
    if (summed) {
      AddBy(others, agg.pos, out);
      out.Add("(", agg.pos);
    } else {
      out.Add("(", fn.pos);
    }
    if (!EmitSelector(selector, /*histogram=*/true, out)) {
      return false;
    }
    out.Add(")", fn.pos);
    return true;
  }

  absl::string_view text_;
  const PromNameMap& names_;
  size_t pos_ = 0;
  std::string error_;
  size_t error_pos_ = 0;
  std::optional<absl::Duration> window_;
  std::vector<std::pair<std::string, std::string>> renamed_;
};

// ---- positions in the file ----

// Where each byte of a scalar's value stands in the file, by walking the source from the
// scalar's mark: plain, '…' and "…" scalars and |/> blocks fold line breaks and indentation,
// and quotes and escapes stand for one character. nullopt when the walk loses its way (an
// unusual escape), so the caller says it could not place the error exactly.
std::optional<std::vector<size_t>> PlaceScalar(absl::string_view text, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.line < 0 || mark.column < 0) {
    return std::nullopt;
  }
  size_t s = 0;
  for (int line = 0; line < mark.line; ++line) {
    s = text.find('\n', s);
    if (s == absl::string_view::npos) {
      return std::nullopt;
    }
    ++s;
  }
  s += static_cast<size_t>(mark.column);
  // A tag or an anchor before the value.
  while (s < text.size() && (text[s] == '!' || text[s] == '&')) {
    while (s < text.size() && text[s] != ' ' && text[s] != '\n') {
      ++s;
    }
    while (s < text.size() && text[s] == ' ') {
      ++s;
    }
  }
  if (s >= text.size()) {
    return std::nullopt;
  }
  const char style = text[s];
  const bool double_quoted = style == '"';
  const bool single_quoted = style == '\'';
  if (double_quoted || single_quoted) {
    ++s;
  } else if (style == '|' || style == '>') {
    s = text.find('\n', s);  // the header line: indicators and a comment
    if (s == absl::string_view::npos) {
      return std::nullopt;
    }
    ++s;
  }
  const std::string& value = node.Scalar();
  std::vector<size_t> at(value.size(), 0);
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  for (size_t i = 0; i < value.size(); ++i) {
    while (true) {
      if (s >= text.size()) {
        // A block's final line break with no newline at the end of the file.
        if (std::all_of(value.begin() + static_cast<ptrdiff_t>(i), value.end(),
                        [&](char c) { return blank(c); }) &&
            !text.empty()) {
          std::fill(at.begin() + static_cast<ptrdiff_t>(i), at.end(), text.size() - 1);
          return at;
        }
        return std::nullopt;
      }
      const char c = text[s];
      if (double_quoted && c == '\\' && s + 1 < text.size()) {
        const char e = text[s + 1];
        if (e == '\n' || e == '\r') {  // an escaped line break: nothing in the value
          s += 2;
          continue;
        }
        size_t length = 2;
        size_t bytes = 1;  // value bytes the escape stands for
        if (e == 'x' || e == 'u' || e == 'U') {
          const size_t digits = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          uint32_t code = 0;
          if (s + 2 + digits > text.size() ||
              !absl::SimpleHexAtoi(text.substr(s + 2, digits), &code)) {
            return std::nullopt;
          }
          length = 2 + digits;
          bytes = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
        } else if (e == 'L' || e == 'P') {
          bytes = 3;  // U+2028, U+2029
        } else if (e == 'N' || e == '_') {
          bytes = 2;  // U+0085, U+00A0
        }
        for (size_t k = 0; k < bytes && i + k < value.size(); ++k) {
          at[i + k] = s;
        }
        i += bytes - 1;
        s += length;
        break;
      }
      if (single_quoted && c == '\'' && s + 1 < text.size() && text[s + 1] == '\'' &&
          value[i] == '\'') {
        at[i] = s;
        s += 2;
        break;
      }
      if (c == value[i]) {
        at[i] = s++;
        break;
      }
      if ((value[i] == ' ' || value[i] == '\n') && (c == '\n' || c == '\r')) {  // folded
        at[i] = s++;
        break;
      }
      if (blank(c)) {  // indentation and folded white space
        ++s;
        continue;
      }
      return std::nullopt;
    }
  }
  return at;
}

// "file:LINE:COL" (1-based; COL counts characters) of byte `offset` of a scalar's value, or
// "file:LINE" and a clause saying where in the value, when the value cannot be placed.
std::pair<std::string, std::string> Where(absl::string_view file, absl::string_view text,
                                          const YAML::Node& node, size_t offset) {
  std::optional<std::vector<size_t>> placed = PlaceScalar(text, node);
  if (!placed.has_value() || placed->empty()) {
    return {YamlWhere(file, node),
            absl::StrCat(" (at character ", offset + 1,
                         " of the expression: its column in the file could not be placed)")};
  }
  size_t byte = 0;
  if (offset < placed->size()) {
    byte = (*placed)[offset];
  } else {  // the end of the expression: just after its last character
    const std::string& value = node.Scalar();
    size_t last = value.size() - 1;
    while (last > 0 && std::isspace(static_cast<unsigned char>(value[last]))) {
      --last;
    }
    byte = (*placed)[last] + 1;
  }
  byte = std::min(byte, text.size());
  const size_t line_start = byte == 0 ? 0 : text.rfind('\n', byte - 1);
  const size_t from = line_start == absl::string_view::npos || byte == 0 ? 0 : line_start + 1;
  size_t line = 1;
  for (size_t i = 0; i < from; ++i) {
    line += text[i] == '\n' ? 1 : 0;
  }
  size_t column = 1;
  for (size_t i = from; i < byte; ++i) {
    column += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80 ? 1 : 0;
  }
  return {absl::StrCat(file, ":", line, ":", column), ""};
}

// ---- the rule file ----

absl::StatusOr<v1::Severity> PromSeverity(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "critical" || lower == "sev1") {
    return v1::SEV1;
  }
  if (lower == "error" || lower == "high" || lower == "page" || lower == "sev2") {
    return v1::SEV2;
  }
  if (lower == "warning" || lower == "sev3") {
    return v1::SEV3;
  }
  if (lower == "info" || lower == "low" || lower == "sev4") {
    return v1::SEV4;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("labels.severity '", text,
                   "' is not one of critical (SEV1), error, high, page (SEV2), warning (SEV3), "
                   "info, low (SEV4) or SEV1..SEV4"));
}

struct Loaded {
  Rule rule;
  std::vector<std::string> notes;
};

absl::StatusOr<Loaded> ParsePromRule(const YAML::Node& node, absl::string_view text,
                                     absl::string_view file, const PromNameMap& names) {
  const std::string where = YamlWhere(file, node);
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a rule must be a map (alert, expr, for, labels, annotations)"));
  }
  if (const YAML::Node record = node["record"]; record.IsDefined()) {
    return absl::InvalidArgumentError(
        absl::StrCat(YamlWhere(file, record),
                     ": recording rules (record:) are not supported: Vigil evaluates alerting "
                     "rules, on the series agents send"));
  }
  Loaded loaded;
  Rule& rule = loaded.rule;
  rule.source = where;
  auto name = YamlString(node, "alert", file, /*required=*/true);
  if (!name.ok()) {
    return name.status();
  }
  rule.name = *name;
  auto fail = [&](const YAML::Node& at, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, at.IsDefined() ? at : node),
                                                   ": rule ", rule.name, ": ", what));
  };
  if (!IsLabelName(rule.name)) {
    return fail(node["alert"], absl::StrCat("alert name '", rule.name,
                                            "' must be letters, digits and _ (like a metric)"));
  }
  if (absl::Status s = YamlCheckKeys(node, file, absl::StrCat("rule ", rule.name),
                                     {"alert", "expr", "for", "labels", "annotations"});
      !s.ok()) {
    return s;
  }
  auto promql = YamlString(node, "expr", file, /*required=*/true);
  if (!promql.ok()) {
    return fail(node, promql.status().message());
  }
  const YAML::Node expr_node = node["expr"];
  PromTranslation translation = TranslatePromQL(*promql, names);
  if (!translation.status.ok()) {
    auto [at, clause] = Where(file, text, expr_node, translation.error_offset);
    return absl::InvalidArgumentError(
        absl::StrCat(at, ": rule ", rule.name, ": expr: ", translation.status.message(), clause));
  }
  absl::StatusOr<Expression> expr = ParseExpression(translation.vigil);
  if (!expr.ok()) {
    // Its column is in the translation: point at the PromQL it came from.
    std::string message(expr.status().message());
    int column = 0;
    size_t source = 0;
    static const LazyRE2 kColumn = {R"((.*) \(column (\d+)\)$)"};
    std::string without_column;
    if (RE2::FullMatch(message, *kColumn, &without_column, &column) && column > 0 &&
        !translation.offsets.empty()) {
      const size_t i = std::min(static_cast<size_t>(column - 1), translation.offsets.size() - 1);
      source = translation.offsets[i];
      message = without_column;
    }
    auto [at, clause] = Where(file, text, expr_node, source);
    return absl::InvalidArgumentError(absl::StrCat(at, ": rule ", rule.name, ": expr: ", message,
                                                   " (translated to `", translation.vigil, "`)",
                                                   clause));
  }
  rule.expr = std::move(*expr);
  if (translation.window.has_value()) {
    rule.window = *translation.window;
  }
  auto for_duration = YamlDuration(node, "for", file, absl::ZeroDuration());
  if (!for_duration.ok()) {
    return fail(node["for"], for_duration.status().message());
  }
  rule.for_duration = *for_duration;

  std::string severity_note = "severity SEV3 (no severity label)";
  if (const YAML::Node labels = node["labels"]; labels.IsDefined() && !labels.IsNull()) {
    if (!labels.IsMap()) {
      return fail(labels, "labels must be a map of label to value");
    }
    for (const auto& kv : labels) {
      absl::StatusOr<std::string> key = YamlKey(kv.first, file, "labels");
      if (!key.ok()) {
        return key.status();
      }
      if (!kv.second.IsScalar()) {
        return fail(kv.second, absl::StrCat("labels.", *key, " must be a single value"));
      }
      if (!IsLabelName(*key)) {
        return fail(kv.first,
                    absl::StrCat("label name '", *key, "' must be letters, digits and _"));
      }
      const std::string& value = kv.second.Scalar();
      if (*key == "severity") {
        absl::StatusOr<v1::Severity> severity = PromSeverity(value);
        if (!severity.ok()) {
          return fail(kv.second, severity.status().message());
        }
        rule.severity = *severity;
        severity_note =
            absl::StrCat("severity '", value, "' -> ", v1::Severity_Name(rule.severity));
      } else {
        rule.labels[*key] = value;
      }
    }
  }
  if (const YAML::Node annotations = node["annotations"];
      annotations.IsDefined() && !annotations.IsNull()) {
    if (!annotations.IsMap()) {
      return fail(annotations, "annotations must be a map of name to text");
    }
    for (const auto& kv : annotations) {
      absl::StatusOr<std::string> key = YamlKey(kv.first, file, "annotations");
      if (!key.ok()) {
        return key.status();
      }
      if (!kv.second.IsScalar()) {
        return fail(kv.second, absl::StrCat("annotations.", *key, " must be text"));
      }
      if (*key == "summary" || *key == "runbook_url") {
        (*key == "summary" ? rule.summary : rule.runbook) = kv.second.Scalar();
        if (absl::StrContains(kv.second.Scalar(), "{{")) {
          loaded.notes.push_back(absl::StrCat(YamlWhere(file, kv.first), ": rule ", rule.name,
                                              ": annotation '", *key,
                                              "' kept as written (Prometheus templates are not "
                                              "expanded)"));
        }
      } else {
        loaded.notes.push_back(absl::StrCat(YamlWhere(file, kv.first), ": rule ", rule.name,
                                            ": annotation '", *key,
                                            "' dropped (a Vigil rule keeps summary and "
                                            "runbook_url only)"));
      }
    }
  }
  if (rule.summary.empty()) {
    rule.summary = absl::StrCat(rule.name, ": ", absl::StripAsciiWhitespace(*promql));
  }
  std::string note =
      absl::StrCat(where, ": rule ", rule.name, ": translated to `", rule.expr.text, "`");
  if (translation.window.has_value()) {
    absl::StrAppend(&note, " with window ", absl::FormatDuration(rule.window));
  }
  absl::StrAppend(&note, "; ", severity_note);
  for (const auto& [from, to] : translation.renamed) {
    absl::StrAppend(&note, "; '", from, "' read as '", to, "' (name map)");
  }
  if (rule.expr.scraped) {
    absl::StrAppend(&note, "; metric '", rule.expr.metric,
                    "' is scraped (declared by agents), not in the built-in schema");
  }
  loaded.notes.insert(loaded.notes.begin(), std::move(note));
  return loaded;
}

absl::Status ReadNameMap(const YAML::Node& node, absl::string_view file, PromNameMap& names) {
  names.clear();
  if (node.IsNull()) {
    return absl::OkStatus();
  }
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        YamlWhere(file, node), ": name_map must be a map of Prometheus name to Vigil name"));
  }
  for (const auto& kv : node) {
    absl::StatusOr<std::string> key = YamlKey(kv.first, file, "name_map");
    if (!key.ok()) {
      return key.status();
    }
    if (!kv.second.IsScalar() || !IsLabelName(*key) || !IsLabelName(kv.second.Scalar())) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, kv.first), ": name_map: '",
                                                     *key,
                                                     "' must map a metric name to a metric name"));
    }
    names[*key] = kv.second.Scalar();
  }
  return absl::OkStatus();
}

}  // namespace

const PromNameMap& DefaultPromNameMap() {
  static const PromNameMap* const kMap = new PromNameMap{
      {"http_request_duration_seconds", "nginx_request_duration_seconds"},
      {"http_requests_total", "nginx_requests_per_second"},
  };
  return *kMap;
}

PromTranslation TranslatePromQL(absl::string_view promql, const PromNameMap& names) {
  return Translator(promql, names).Run();
}

bool IsPrometheusRuleFile(const YAML::Node& root) {
  if (root.IsSequence()) {
    return true;
  }
  if (!root.IsMap()) {
    return false;
  }
  for (const auto& kv : root) {
    if (kv.first.IsScalar() && kv.first.Scalar() == "groups") {
      return true;
    }
  }
  return false;
}

RuleFile ParsePrometheusRules(const YAML::Node& root, absl::string_view text,
                              absl::string_view name) {
  RuleFile result;
  PromNameMap names = DefaultPromNameMap();
  std::vector<YAML::Node> rules;
  if (root.IsSequence()) {
    for (const YAML::Node& item : root) {
      rules.push_back(item);
    }
  } else {
    if (absl::Status s = YamlCheckKeys(root, name, "the rule file", {"groups", "name_map"});
        !s.ok()) {
      result.errors.emplace_back(s.message());
      return result;
    }
    if (const YAML::Node map = root["name_map"]; map.IsDefined()) {
      if (absl::Status s = ReadNameMap(map, name, names); !s.ok()) {
        result.errors.emplace_back(s.message());
        return result;
      }
    }
    const YAML::Node groups = root["groups"];
    if (!groups.IsNull() && !groups.IsSequence()) {
      result.errors.push_back(
          absl::StrCat(YamlWhere(name, groups), ": groups must be a list of {name, rules}"));
      return result;
    }
    std::map<std::string, std::string> seen_groups;
    for (const YAML::Node& group : groups) {
      if (absl::Status s = YamlCheckKeys(group, name, "a group", {"name", "interval", "rules"});
          !s.ok()) {
        result.errors.emplace_back(s.message());
        continue;
      }
      auto group_name = YamlString(group, "name", name, /*required=*/true);
      if (!group_name.ok()) {
        result.errors.emplace_back(group_name.status().message());
        continue;
      }
      const std::string where = YamlWhere(name, group);
      if (group_name->empty()) {
        result.errors.push_back(absl::StrCat(where, ": a group's name must not be empty"));
        continue;
      }
      if (auto [it, inserted] = seen_groups.emplace(*group_name, where); !inserted) {
        result.errors.push_back(absl::StrCat(where, ": group ", *group_name,
                                             ": duplicate name (first defined at ", it->second,
                                             ")"));
        continue;
      }
      auto interval = YamlDuration(group, "interval", name, absl::ZeroDuration());
      if (!interval.ok()) {
        result.errors.emplace_back(interval.status().message());
        continue;
      }
      if (*interval > absl::ZeroDuration()) {
        result.notes.push_back(absl::StrCat(
            YamlWhere(name, group["interval"]), ": group ", *group_name, ": interval ",
            absl::FormatDuration(*interval), " not used: Vigil evaluates rules as samples arrive"));
      }
      const YAML::Node list = group["rules"];
      if (!list.IsDefined() || list.IsNull()) {
        continue;
      }
      if (!list.IsSequence()) {
        result.errors.push_back(
            absl::StrCat(YamlWhere(name, list), ": group ", *group_name, ": rules must be a list"));
        continue;
      }
      for (const YAML::Node& item : list) {
        rules.push_back(item);
      }
    }
  }
  std::map<std::string, std::string> seen;  // name -> where
  for (const YAML::Node& node : rules) {
    absl::StatusOr<Loaded> loaded = absl::InternalError("not parsed");
    try {
      loaded = ParsePromRule(node, text, name, names);
    } catch (...) {
      loaded = YamlExceptionStatus(name);
    }
    if (!loaded.ok()) {
      result.errors.emplace_back(loaded.status().message());
      continue;
    }
    Rule& rule = loaded->rule;
    if (auto [it, inserted] = seen.emplace(rule.name, rule.source); !inserted) {
      result.errors.push_back(absl::StrCat(rule.source, ": rule ", rule.name,
                                           ": duplicate name (first defined at ", it->second,
                                           "): Vigil keys alerts by rule name"));
      continue;
    }
    for (std::string& note : loaded->notes) {
      result.notes.push_back(std::move(note));
    }
    result.rules.push_back(std::move(rule));
  }
  return result;
}

}  // namespace vigil::controller
