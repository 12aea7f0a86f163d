// absl::Status helpers shared by every module: early-return macros and the one pair of
// conversions between absl::Status and grpc::Status. Stateless; thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include <exception>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define VIGIL_STATUS_CONCAT_INNER_(a, b) a##b
#define VIGIL_STATUS_CONCAT_(a, b) VIGIL_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` yields a non-OK absl::Status.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    ::absl::Status vigil_status_ = (expr);                     \
    if (!vigil_status_.ok()) return vigil_status_;             \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr())`: binds the value or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  VIGIL_ASSIGN_OR_RETURN_IMPL_(VIGIL_STATUS_CONCAT_(vigil_statusor_, __LINE__), lhs, expr)
#define VIGIL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()

namespace vigil {

// absl and gRPC share the canonical code numbering, so the mapping is one-to-one.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Prefixes the message of a non-OK status with `context` ("file.yaml:3: ...").
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// Wraps the exception currently being handled (from libpqxx, yaml-cpp, std) as a Status.
absl::Status StatusFromCurrentException(absl::string_view context);

}  // namespace vigil
