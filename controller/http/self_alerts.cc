#include "controller/http/self_alerts.h"

#include <re2/re2.h>

#include <exception>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/yaml_util.h"

namespace vigil::controller {
namespace {

// Names appear as metric labels.
constexpr size_t kMaxNameBytes = 64;
// A matcher is one line of a settings file.
constexpr size_t kMaxMatcherBytes = 1024;

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

bool ValidLabelName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return false;
    }
  }
  return true;
}

// The text inside double quotes, with \" \\ \n and \t unescaped; `rest` starts after the
// opening quote.
absl::StatusOr<std::string> Unquote(absl::string_view rest) {
  std::string out;
  for (size_t i = 0; i < rest.size(); ++i) {
    const char c = rest[i];
    if (c == '"') {
      if (i + 1 != rest.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("text after the closing quote: '", rest.substr(i + 1), "'"));
      }
      return out;
    }
    if (c == '\\' && i + 1 < rest.size()) {
      const char next = rest[++i];
      out.push_back(next == 'n' ? '\n' : next == 't' ? '\t' : next);
      continue;
    }
    out.push_back(c);
  }
  return absl::InvalidArgumentError("the value's quote is not closed");
}

AlertLabelMatcher Matcher(const std::string& text) {
  absl::StatusOr<AlertLabelMatcher> m = ParseAlertLabelMatcher(text);
  return *std::move(m);  // the defaults are known good (a unit test parses them)
}

}  // namespace

absl::StatusOr<AlertLabelMatcher> ParseAlertLabelMatcher(absl::string_view text) {
  if (text.size() > kMaxMatcherBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a matcher of ", text.size(), " bytes; at most ", kMaxMatcherBytes));
  }
  AlertLabelMatcher m;
  m.text = std::string(absl::StripAsciiWhitespace(text));
  absl::string_view t = m.text;
  const size_t op_at = t.find_first_of("=!");
  if (op_at == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", t, "' is not a matcher such as job=\"vigil\" (no =, !=, =~ or !~)"));
  }
  m.label = std::string(absl::StripAsciiWhitespace(t.substr(0, op_at)));
  if (!ValidLabelName(m.label)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", m.label, "' in '", t, "' is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
  }
  absl::string_view rest = t.substr(op_at);
  if (absl::StartsWith(rest, "=~")) {
    m.op = AlertLabelMatcher::Op::kRegex;
    rest.remove_prefix(2);
  } else if (absl::StartsWith(rest, "!~")) {
    m.op = AlertLabelMatcher::Op::kNotRegex;
    rest.remove_prefix(2);
  } else if (absl::StartsWith(rest, "!=")) {
    m.op = AlertLabelMatcher::Op::kNotEqual;
    rest.remove_prefix(2);
  } else if (absl::StartsWith(rest, "=")) {
    m.op = AlertLabelMatcher::Op::kEqual;
    rest.remove_prefix(1);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("'", t, "': the operator is not one of =, !=, =~, !~"));
  }
  rest = absl::StripAsciiWhitespace(rest);
  if (absl::StartsWith(rest, "\"")) {
    absl::StatusOr<std::string> value = Unquote(rest.substr(1));
    if (!value.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("'", t, "': ", value.status().message()));
    }
    m.value = *std::move(value);
  } else {
    m.value = std::string(rest);
  }
  if (m.op == AlertLabelMatcher::Op::kRegex || m.op == AlertLabelMatcher::Op::kNotRegex) {
    auto regex = std::make_shared<re2::RE2>(absl::StrCat("^(?:", m.value, ")$"), re2::RE2::Quiet);
    if (!regex->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", t, "': the regular expression is invalid: ", regex->error()));
    }
    m.regex = std::move(regex);
  }
  return m;
}

bool AlertLabelMatcher::Matches(
    const google::protobuf::Map<std::string, std::string>& labels) const {
  auto it = labels.find(label);
  static const std::string kMissing;  // a missing label reads "", as in Prometheus
  const std::string& actual = it == labels.end() ? kMissing : it->second;
  switch (op) {
    case Op::kEqual:
      return actual == value;
    case Op::kNotEqual:
      return actual != value;
    case Op::kRegex:
      return RE2::FullMatch(actual, *regex);
    case Op::kNotRegex:
      return !RE2::FullMatch(actual, *regex);
  }
  return false;
}

std::vector<SelfAlertRule> DefaultSelfAlertRules() {
  // A scrape job of the controller (/metrics, /fleet/metrics), or a component labelled as Vigil.
  constexpr char kVigil[] = R"("vigil|vigil[-_].*")";
  return {
      {"vigil_job", {Matcher(absl::StrCat("job=~", kVigil))}},
      {"vigil_service", {Matcher(absl::StrCat("service=~", kVigil))}},
      {"vigil_app", {Matcher(absl::StrCat("app=~", kVigil))}},
  };
}

absl::StatusOr<std::vector<SelfAlertRule>> ParseSelfAlertRules(const YAML::Node& node,
                                                               absl::string_view file) {
  constexpr absl::string_view kKey = "webhook_self_alerts";
  std::vector<SelfAlertRule> rules;
  if (!node.IsDefined() || node.IsNull()) {
    return DefaultSelfAlertRules();
  }
  std::vector<std::string> errors;
  try {
    if (!node.IsSequence()) {
      return absl::InvalidArgumentError(
          absl::StrCat(YamlWhere(file, node), ": key '", kKey,
                       "' must be a list of {name, matchers} (an empty list: none but Vigil's "
                       "own notifications)"));
    }
    if (node.size() > kMaxSelfAlertRules) {
      return absl::InvalidArgumentError(absl::StrCat(YamlWhere(file, node), ": key '", kKey,
                                                     "' has ", node.size(), " entries; at most ",
                                                     kMaxSelfAlertRules));
    }
    std::set<std::string> names;
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node entry = node[i];
      const std::string context = absl::StrCat(kKey, "[", i, "]");
      auto fail = [&](const YAML::Node& at, absl::string_view key, absl::string_view why) {
        errors.push_back(absl::StrCat(YamlWhere(file, at), ": key '", context,
                                      key.empty() ? "" : ".", key, "': ", why));
      };
      if (!entry.IsMap()) {
        fail(entry, "", "must be a map with name and matchers");
        continue;
      }
      if (absl::Status s = YamlCheckKeys(entry, file, context, {"name", "matchers"}); !s.ok()) {
        errors.emplace_back(s.message());
        continue;
      }
      SelfAlertRule rule;
      absl::StatusOr<std::string> name = YamlString(entry, "name", file, /*required=*/true);
      if (!name.ok()) {
        errors.push_back(absl::StrCat(name.status().message(), " (in ", context, ")"));
      } else if (!ValidName(*name)) {
        fail(entry["name"], "name",
             absl::StrCat("'", *name, "' must be 1-", kMaxNameBytes,
                          " letters, digits, '-', '_' or '.'"));
      } else if (*name == kSentByVigilReason) {
        fail(entry["name"], "name",
             absl::StrCat("'", *name, "' is reserved for Vigil's own notifications"));
      } else if (!names.insert(*name).second) {
        fail(entry["name"], "name", absl::StrCat("'", *name, "' is used twice"));
      } else {
        rule.name = *name;
      }
      const YAML::Node list = entry["matchers"];
      if (!list.IsDefined() || list.IsNull()) {
        fail(entry, "matchers", "missing: a list such as ['job=~\"vigil.*\"']");
        continue;
      }
      if (!list.IsSequence() || list.size() == 0 || list.size() > kMaxMatchersPerRule) {
        fail(list, "matchers",
             absl::StrCat("must be a list of 1 to ", kMaxMatchersPerRule,
                          " matchers such as 'job=~\"vigil.*\"'"));
        continue;
      }
      for (size_t j = 0; j < list.size(); ++j) {
        const std::string at = absl::StrCat("matchers[", j, "]");
        if (!list[j].IsScalar()) {
          fail(list[j], at, "must be a string such as 'job=~\"vigil.*\"'");
          continue;
        }
        absl::StatusOr<AlertLabelMatcher> m = ParseAlertLabelMatcher(list[j].Scalar());
        if (!m.ok()) {
          fail(list[j], at, m.status().message());
          continue;
        }
        rule.matchers.push_back(*std::move(m));
      }
      if (!rule.name.empty() && rule.matchers.size() == list.size()) {
        rules.push_back(std::move(rule));
      }
    }
  } catch (const std::exception&) {
    return YamlExceptionStatus(file);
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  return rules;
}

std::optional<size_t> SelfAlertReason(
    const std::vector<SelfAlertRule>& rules,
    const google::protobuf::Map<std::string, std::string>& labels) {
  if (auto it = labels.find(std::string(kOwnSourceLabel));
      it != labels.end() && it->second == kOwnSourceValue) {
    return 0;
  }
  for (size_t i = 0; i < rules.size(); ++i) {
    bool all = true;
    for (const AlertLabelMatcher& m : rules[i].matchers) {
      if (!m.Matches(labels)) {
        all = false;
        break;
      }
    }
    if (all) {
      return i + 1;
    }
  }
  return std::nullopt;
}

}  // namespace vigil::controller
