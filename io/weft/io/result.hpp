// weft: the value-or-error type every I/O operation gives.
#pragma once

#include <cerrno>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

#include <weft/errc.hpp>

namespace weft::io {

/// What went wrong in an I/O operation: the operating system's error and the operation's name
/// ("connect", "recv", "openat"...), so that a message can name both.
struct io_error {
  /// The cause: an errno value (generic category), or a `weft::errc` such as `end_of_stream`.
  std::error_code code;
  const char* operation = "";  ///< the operation's name (a static string)

  /// "operation: cause", for example "connect: Connection refused".
  std::string message() const { return std::string(operation) + ": " + code.message(); }
};

/// Makes an `io_error` from a negated errno, as io_uring reports it.
inline io_error error_from_result(int negative_errno, const char* operation) noexcept {
  return {std::error_code(-negative_errno, std::generic_category()), operation};
}

/// The result of an I/O operation: a `T`, or an `io_error`.
///
/// I/O reports failures by value, not by exception, so a server's hot path never throws:
/// `if (!r) { ... r.error() ... }`. `value()` is there for code that prefers exceptions: it
/// throws `std::system_error` whose `what()` names the operation and the cause. Cancellation is
/// the one exception to the rule: like every wait in weft, an operation whose task is cancelled
/// (a stop request, `with_timeout`, executor shutdown) throws `errc::cancelled`, unless the
/// operation had completed first, in which case its result is returned and nothing is lost.
/// Not thread-safe (a plain value type).
template <class T>
class [[nodiscard]] result {
 public:
  /// A success holding `value` (implicit, so an operation can `return value;`).
  result(T value) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT: implicit on purpose
      : state_(std::in_place_index<0>, std::move(value)) {}
  /// A failure holding `e` (implicit, so an operation can `return error;`).
  result(io_error e) noexcept : state_(std::in_place_index<1>, e) {}  // NOLINT

  /// True when the operation succeeded.
  explicit operator bool() const noexcept { return state_.index() == 0; }
  /// True when the operation succeeded (same as `operator bool`).
  bool has_value() const noexcept { return state_.index() == 0; }

  /// The value; throws `std::system_error` ("operation: cause") when there is none.
  T& value() & {
    check();
    return std::get<0>(state_);
  }
  /// The value, moved out; throws `std::system_error` ("operation: cause") when there is none.
  T&& value() && {
    check();
    return std::get<0>(std::move(state_));
  }
  /// The value; throws `std::system_error` ("operation: cause") when there is none.
  const T& value() const& {
    check();
    return std::get<0>(state_);
  }
  /// A pointer to the value; throws like `value()` (not undefined, unlike std::optional's).
  T* operator->() { return &value(); }
  /// A pointer to the value; throws like `value()`.
  const T* operator->() const { return &value(); }
  /// The value; throws like `value()` (not undefined, unlike std::optional's).
  T& operator*() & { return value(); }
  /// The value; throws like `value()`.
  const T& operator*() const& { return value(); }
  /// The value, moved out; throws like `value()`.
  T&& operator*() && { return std::move(*this).value(); }

  /// The error's code, or an empty code when the operation succeeded.
  std::error_code error() const noexcept {
    return state_.index() == 1 ? std::get<1>(state_).code : std::error_code();
  }
  /// The error with the operation's name; only meaningful when `!*this`.
  io::io_error full_error() const noexcept {
    return state_.index() == 1 ? std::get<1>(state_) : io::io_error{};
  }
  /// "operation: cause", or "" when the operation succeeded.
  std::string message() const { return state_.index() == 1 ? std::get<1>(state_).message() : ""; }

 private:
  void check() const {
    if (state_.index() == 1) {
      const io::io_error& e = std::get<1>(state_);
      throw std::system_error(e.code, e.operation);
    }
  }
  std::variant<T, io::io_error> state_;
};

/// The result of an operation that gives nothing but success or an error.
template <>
class [[nodiscard]] result<void> {
 public:
  /// A success.
  result() noexcept = default;
  /// A failure holding `e` (implicit, so an operation can `return error;`).
  result(io_error e) noexcept : error_(e), failed_(true) {}  // NOLINT

  /// True when the operation succeeded.
  explicit operator bool() const noexcept { return !failed_; }
  /// True when the operation succeeded (same as `operator bool`).
  bool has_value() const noexcept { return !failed_; }
  /// Throws `std::system_error` ("operation: cause") when the operation failed.
  void value() const {
    if (failed_) throw std::system_error(error_.code, error_.operation);
  }
  /// The error's code, or an empty code when the operation succeeded.
  std::error_code error() const noexcept { return failed_ ? error_.code : std::error_code(); }
  /// The error with the operation's name; only meaningful when `!*this`.
  io::io_error full_error() const noexcept { return failed_ ? error_ : io::io_error{}; }
  /// "operation: cause", or "" when the operation succeeded.
  std::string message() const { return failed_ ? error_.message() : ""; }

 private:
  io::io_error error_{};
  bool failed_ = false;
};

}  // namespace weft::io
