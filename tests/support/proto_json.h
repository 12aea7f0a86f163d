// Parsing the CLI's `-o json` output (protobuf's JSON mapping) back into messages, for tests.
#pragma once

#include <google/protobuf/util/json_util.h>

#include <string>

namespace vigil::testing {

// Clears `message` and parses `json` into it; false when it is not that message's JSON.
template <typename Message>
bool ParseJson(const std::string& json, Message* message) {
  message->Clear();
  return google::protobuf::util::JsonStringToMessage(json, message).ok();
}

}  // namespace vigil::testing
