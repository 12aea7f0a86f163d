#include "agent/actions/api_answers.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace vigil::agent {
namespace {

constexpr size_t kMaxMessageBytes = 300;

}  // namespace

absl::StatusOr<std::map<std::string, int64_t>> ParseK8sSpec(
    absl::string_view json, const std::vector<absl::string_view>& names) {
  google::protobuf::Struct root;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &root).ok()) {
    return absl::InvalidArgumentError("the answer is not a JSON object");
  }
  auto spec = root.fields().find("spec");
  if (spec == root.fields().end() ||
      !(spec->second.kind_case() == google::protobuf::Value::kStructValue)) {
    return absl::InvalidArgumentError("the answer has no \"spec\" object");
  }
  std::map<std::string, int64_t> out;
  for (absl::string_view name : names) {
    auto field = spec->second.struct_value().fields().find(std::string(name));
    if (field == spec->second.struct_value().fields().end()) {
      continue;
    }
    if (field->second.kind_case() != google::protobuf::Value::kNumberValue) {
      return absl::InvalidArgumentError(absl::StrCat("spec.", name, " is not a number"));
    }
    const double value = field->second.number_value();
    if (!std::isfinite(value) || value != std::floor(value) || value < 0 || value > 1e9) {
      return absl::InvalidArgumentError(absl::StrCat("spec.", name, " is not a whole number"));
    }
    out[std::string(name)] = static_cast<int64_t>(value);
  }
  return out;
}

std::string JsonErrorMessage(absl::string_view json) {
  google::protobuf::Struct root;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &root).ok()) {
    return "";
  }
  auto message = root.fields().find("message");
  if (message == root.fields().end() ||
      message->second.kind_case() != google::protobuf::Value::kStringValue) {
    return "";
  }
  const std::string& text = message->second.string_value();
  // Bounded: it goes into a reason on the timeline.
  return text.size() <= kMaxMessageBytes ? text : text.substr(0, kMaxMessageBytes) + "...";
}

absl::StatusOr<DockerPruned> ParseDockerPrune(absl::string_view json) {
  google::protobuf::Struct root;
  if (!google::protobuf::util::JsonStringToMessage(std::string(json), &root).ok()) {
    return absl::InvalidArgumentError("the answer is not a JSON object");
  }
  DockerPruned out;
  for (const auto& [key, value] : root.fields()) {
    if (key == "SpaceReclaimed") {
      if (value.kind_case() != google::protobuf::Value::kNumberValue ||
          !std::isfinite(value.number_value()) || value.number_value() < 0 ||
          value.number_value() > 9e18) {
        return absl::InvalidArgumentError("SpaceReclaimed is not a byte count");
      }
      out.space_reclaimed = static_cast<int64_t>(value.number_value());
    } else if (absl::EndsWith(key, "Deleted")) {
      // null when nothing was deleted.
      if (value.kind_case() == google::protobuf::Value::kNullValue) {
        continue;
      }
      if (value.kind_case() != google::protobuf::Value::kListValue) {
        return absl::InvalidArgumentError(absl::StrCat(key, " is not a list"));
      }
      out.deleted += value.list_value().values_size();
    }
  }
  return out;
}

}  // namespace vigil::agent
