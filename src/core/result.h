// Result<T>: a value or an Error. Expected failures travel as values; exceptions
// are reserved for programming errors and are converted at module boundaries.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace roster {

enum class ErrorKind {
  kInvalidArgument,     // bad config or usage
  kInvalidData,         // malformed input from outside (file, server response)
  kNotFound,            // the thing does not exist (404, missing file)
  kPreconditionFailed,  // If-Match / If-None-Match failed (412)
  kConflict,            // the server refuses for a reason a retry will not fix
  kThrottled,           // 429 / 503 with Retry-After
  kTransient,           // 5xx, timeouts, resets: worth retrying
  kAccessDenied,        // 401 / 403
  kUnavailable,         // cannot reach the server at all
  kAborted,             // stopped on purpose (deletion guard, cancellation)
  kInternal,            // a bug
};

const char* ErrorKindName(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;
  // For kThrottled / kTransient: how long the server asked us to wait, if it said.
  std::chrono::milliseconds retry_after{0};
  // The server refused the credential itself (HTTP 401), not access to one
  // thing (403): nothing more should be tried with it in this run.
  bool credential_refused = false;
  // The target user cannot hold a collection at all (Graph: the mailbox
  // does not exist or has no Exchange Online licence): the run names them
  // in its report and goes on without failing.
  bool no_such_user = false;
  // The answer was larger than the cap the request allowed (a caller may
  // ask for less at a time).
  bool too_large = false;

  bool retryable() const { return kind == ErrorKind::kThrottled || kind == ErrorKind::kTransient; }
};

inline Error MakeError(ErrorKind kind, std::string message) {
  return Error{kind, std::move(message), {}};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }
  Error&& take_error() { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *error_; }
  Error&& take_error() { return std::move(*error_); }

 private:
  std::optional<Error> error_;
};

using Status = Result<void>;

}  // namespace roster

// Propagates an error from an expression returning Result<...>.
#define ROSTER_RETURN_IF_ERROR(expr)                              \
  do {                                                            \
    auto roster_status_ = (expr);                                 \
    if (!roster_status_.ok()) return roster_status_.take_error(); \
  } while (0)

#define ROSTER_CONCAT_INNER(a, b) a##b
#define ROSTER_CONCAT(a, b) ROSTER_CONCAT_INNER(a, b)
#define ROSTER_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.take_error();            \
  lhs = std::move(tmp).value()
// ROSTER_ASSIGN_OR_RETURN(auto x, Compute()); binds x or returns the error.
#define ROSTER_ASSIGN_OR_RETURN(lhs, expr) \
  ROSTER_ASSIGN_OR_RETURN_IMPL(ROSTER_CONCAT(roster_result_, __LINE__), lhs, expr)
