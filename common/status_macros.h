// Status propagation helpers used across the project.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ST_STATUS_CONCAT_INNER_(a, b) a##b
#define ST_STATUS_CONCAT_(a, b) ST_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` yields a non-OK absl::Status.
#define ST_RETURN_IF_ERROR(expr)                   \
  do {                                             \
    ::absl::Status st_status_ = (expr);            \
    if (!st_status_.ok()) return st_status_;       \
  } while (0)

// `ST_ASSIGN_OR_RETURN(auto x, MakeX());` assigns the value of an
// absl::StatusOr or returns its error status.
#define ST_ASSIGN_OR_RETURN(lhs, expr) \
  ST_ASSIGN_OR_RETURN_IMPL_(ST_STATUS_CONCAT_(st_statusor_, __LINE__), lhs, expr)
#define ST_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

namespace st {

// Prefixes `context` to a non-OK status message, keeping its code.
inline absl::Status Annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), std::string(context) + ": " + std::string(status.message()));
}

}  // namespace st
