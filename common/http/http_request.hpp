// An HTTP/1.1 request parser, sans-IO, on libhttp-parser (the parser Node.js used for years): bytes
// in, one request out, or an error with the status to answer (400, 413, 431, 505). Bounded: the
// request line and headers together may not exceed max_header_bytes, nor the body max_body_bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/bytes.hpp"

namespace thor::http {

struct Request {
  std::string method;  // "GET", "HEAD", ...
  std::string target;  // as sent: "/status?x=1"
  std::string path;    // "/status"
  std::string query;   // "x=1"
  int version_major = 1;
  int version_minor = 1;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  bool keep_alive = false;
  // The first header with this (lower-case) name.
  std::optional<std::string_view> header(std::string_view name) const;
};

struct Limits {
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_headers = 100;
  std::size_t max_body_bytes = 64 * 1024;
};

class RequestParser {
 public:
  enum class State { incomplete, complete, error };

  explicit RequestParser(Limits limits = {});
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Consumes bytes until a whole request is read (bytes after it belong to the next request and are
  // not consumed), or an error. Returns how many bytes were used.
  std::size_t feed(ByteView data);
  State state() const { return state_; }
  bool started() const { return started_; }  // some bytes of a request have arrived
  const Request& request() const { return request_; }
  int error_status() const { return error_status_; }  // 400, 413, 431 or 505
  const std::string& error() const { return error_; }
  // Ready for the next request on the same connection.
  void reset();

 private:
  struct Impl;
  friend struct Impl;
  void fail(int status, std::string why);
  bool add_header_bytes(std::size_t n);
  bool commit_header();
  bool split_target();

  Limits limits_;
  std::unique_ptr<Impl> impl_;
  State state_ = State::incomplete;
  Request request_;
  int error_status_ = 0;
  std::string error_;
  bool started_ = false;
  std::size_t header_bytes_ = 0;
  std::string field_, value_;
  bool in_value_ = false;
};

}  // namespace thor::http
