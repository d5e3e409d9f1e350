// Errors as values. Result<T> for operations that succeed or fail with a reason a person can act on;
// Decoded<T> for parsers of network bytes, which have a third outcome: "need more bytes".
#pragma once

#include <cassert>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace thor {

struct Error {
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}           // NOLINT(implicit)
  Result(Error error) : v_(std::move(error)) {}       // NOLINT(implicit)
  static Result fail(std::string message) { return Result(Error{std::move(message)}); }

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const std::string& error() const { assert(!ok()); return std::get<1>(v_).message; }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success or an error message.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error.message)) {}  // NOLINT(implicit)
  static Result fail(std::string message) { return Result(Error{std::move(message)}); }
  bool ok() const { return !error_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { assert(!ok()); return *error_; }

 private:
  std::optional<std::string> error_;
};

using Status = Result<void>;

enum class DecodeStatus { ok, incomplete, invalid };

// The three outcomes of decoding bytes from the network (Arti's TResult, Tor's socks_result_t):
// a value with how many bytes it used, "need more bytes" (never an error), or invalid with a reason.
template <class T>
struct [[nodiscard]] Decoded {
  DecodeStatus status = DecodeStatus::incomplete;
  std::optional<T> value;
  std::size_t consumed = 0;
  std::string error;

  static Decoded ok(T v, std::size_t used) {
    Decoded d;
    d.status = DecodeStatus::ok;
    d.value = std::move(v);
    d.consumed = used;
    return d;
  }
  static Decoded incomplete() { return Decoded{}; }
  static Decoded invalid(std::string why) {
    Decoded d;
    d.status = DecodeStatus::invalid;
    d.error = std::move(why);
    return d;
  }
  bool is_ok() const { return status == DecodeStatus::ok; }
  bool is_incomplete() const { return status == DecodeStatus::incomplete; }
  bool is_invalid() const { return status == DecodeStatus::invalid; }
};

}  // namespace thor
