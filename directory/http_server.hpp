// A small HTTP/1.1 server on a libuv loop for the directory's status pages. It only moves bytes:
// parsing is common/http's RequestParser, answers come from a handler. Each connection is bounded
// (header size, body size, one deadline per request, queued output) and a bad one is answered with
// its 4xx, logged in one warn line, and closed without touching the others.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "common/http/http_request.hpp"
#include "common/http/http_response.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"

namespace thor::directory {

class HttpServer {
 public:
  struct Options {
    http::Limits limits;
    std::uint64_t request_timeout_ms = 10000;  // from a request's first byte (or an idle keep-alive) to its end
    std::size_t max_connections = 256;
    std::size_t max_queued_bytes = 4 << 20;    // stop reading a client that does not read its answers
  };
  using Handler = std::function<http::Response(const http::Request&)>;
  using ResponseObserver = std::function<void(int status)>;

  HttpServer(uv_loop_t* loop, Options options, Handler handler, ResponseObserver observer);
  ~HttpServer();
  Status listen(const HostPort& where);
  std::uint16_t port() const { return listener_ ? listener_->bound_port() : 0; }
  void stop();
  std::size_t connections() const { return conns_.size(); }

 private:
  struct Conn;
  void on_accept(std::unique_ptr<uv::TcpConnection> tcp);
  void on_data(std::uint64_t id, ByteView data);
  void process(Conn& c);
  void respond(Conn& c, const http::Response& r, bool keep_alive, bool head_only);
  void refuse(Conn& c, int status, const std::string& why);
  void close_gracefully(Conn& c);
  void on_timeout(std::uint64_t id);
  void retire(std::uint64_t id);

  uv_loop_t* loop_;
  Options options_;
  Handler handler_;
  ResponseObserver observer_;
  std::unique_ptr<uv::TcpListener> listener_;
  std::map<std::uint64_t, std::unique_ptr<Conn>> conns_;
  // Closed connections wait here until the loop is outside their callbacks.
  std::vector<std::unique_ptr<Conn>> retired_;
  uv::Timer reaper_;
  std::uint64_t next_id_ = 1;
};

}  // namespace thor::directory
