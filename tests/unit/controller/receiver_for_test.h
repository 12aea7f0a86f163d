// A notification receiver with only what the notify tests vary, shared by notify_test and
// notifier_test.
#pragma once

#include <string>

#include "controller/notify/notify_config.h"

namespace vigil::controller {

inline Receiver MakeReceiver(const std::string& name, ReceiverType type,
                             const std::string& url = "",
                             WebhookFormat format = WebhookFormat::kGeneric) {
  Receiver r;
  r.name = name;
  r.type = type;
  r.url = url;
  r.format = format;
  return r;
}

}  // namespace vigil::controller
