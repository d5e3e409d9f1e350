// The HTTP proxy CONNECT handshake as a sans-IO parser, for programs that speak only HTTP proxies:
//   CONNECT host:port HTTP/1.1\r\n  [headers]\r\n  \r\n
// Proxy-Authorization (any credentials; Basic is decoded) becomes the stream isolation key, as
// SOCKS5 username/password does. Built on libhttp-parser, which already knows the grammar's corners
// (obsolete line folding, bare LF, token characters, authority-form URLs with [IPv6]).
//
// Use like socks::ServerHandshake: feed the bytes received and not yet consumed; drop `consumed`;
// send `reply` on error, then close. Once `request` is set, the bytes left after the head are the
// client's early data (typically a TLS ClientHello) to forward once the stream is open.
// Here the parser keeps partial input itself, so an incomplete head is consumed as it arrives.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.hpp"
#include "common/cell/relay_msg.hpp"
#include "common/net_address.hpp"

namespace thor::socks {

// Request heads larger than this are refused with 431: a CONNECT needs a few hundred bytes.
constexpr std::size_t kMaxConnectHeadSize = 8192;

struct ConnectRequest {
  HostPort target;            // host: a name or an IP literal ("::1", no brackets)
  std::string isolation_key;  // from Proxy-Authorization; empty when there was none
};

struct HttpConnectAction {
  Bytes reply;                        // an error response to send before closing (empty otherwise)
  std::size_t consumed = 0;
  std::optional<ConnectRequest> request;
  std::optional<std::string> error;   // what was wrong, for a log line (no addresses in it)
};

class HttpConnectParser {
 public:
  HttpConnectParser();
  ~HttpConnectParser();
  HttpConnectParser(const HttpConnectParser&) = delete;
  HttpConnectParser& operator=(const HttpConnectParser&) = delete;

  HttpConnectAction advance(ByteView input);
  bool finished() const { return done_; }
  bool failed() const { return failed_; }

 private:
  struct State;  // libhttp-parser's state and what its callbacks collected (kept out of this header)
  HttpConnectAction fail(int status, std::string_view reason, std::string why);
  HttpConnectAction finish(std::size_t consumed);

  std::unique_ptr<State> state_;
  bool done_ = false;
  bool failed_ = false;
};

// "HTTP/1.1 200 Connection established" and an empty line: the tunnel is open.
Bytes http_connect_established();
// A complete error response with a short text body; the connection closes after it.
// 405 responses carry "Allow: CONNECT".
Bytes http_connect_error(int status, std::string_view reason, std::string_view message);

struct HttpStatus {
  int code = 502;
  std::string_view reason;   // the status line's reason phrase
  std::string_view message;  // one sentence for the body
};
// The response for a stream the exit ended with this reason: 403 for the exit policy, 504 for a
// timeout, 503 when the exit is out of resources, 502 Bad Gateway otherwise.
HttpStatus http_status_for(EndReason reason);
Bytes http_connect_failed(EndReason reason);

}  // namespace thor::socks
