#include "cli/command_env.h"

#include "absl/strings/str_cat.h"

namespace vigil::cli {

ControllerClient* CommandEnv::Client() {
  if (client_ != nullptr) return client_.get();
  if (client_failed_) return nullptr;
  auto client = ControllerClient::Create(connection);
  if (!client.ok()) {
    client_failed_ = true;
    Fail(client.status().message());
    return nullptr;
  }
  client_ = *std::move(client);
  return client_.get();
}

int CommandEnv::Fail(absl::string_view message) {
  err_ << "vigil: " << OneLine(message) << '\n';
  err_.flush();
  return kExitFailed;
}

int CommandEnv::UsageError(absl::string_view message, absl::string_view command) {
  err_ << "vigil: " << OneLine(message) << " (run 'vigil " << command
       << (command.empty() ? "" : " ") << "--help')\n";
  err_.flush();
  return kExitUsage;
}

int CommandEnv::PrintJson(const google::protobuf::Message& message) {
  out_ << ToJson(message, /*pretty=*/true);
  out_.flush();
  return kExitOk;
}

}  // namespace vigil::cli
