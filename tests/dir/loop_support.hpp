// Running a libuv loop in tests (the shared TestLoop, run_until, run_for), and small clients (raw
// HTTP, raw directory protocol) that live on the same loop as the daemon under test.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/dir/dir_protocol.hpp"
#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"
#include "tests/support/test_loop.hpp"

namespace thor::dir::testing {

// The loop (declare it first in a test) and running it until a condition holds, in milliseconds.
using ::thor::test::run_for;
using ::thor::test::run_until;
using ::thor::test::TestLoop;

// A client that sends bytes and collects everything until the server closes.
struct RawClient {
  explicit RawClient(uv_loop_t* loop) : conn(std::make_unique<uv::TcpConnection>(loop)) {}
  std::unique_ptr<uv::TcpConnection> conn;
  std::string received;
  bool connected = false, closed = false;
  std::string error;

  void connect(std::uint16_t port, std::string first_bytes = "") {
    conn->connect(HostPort{"127.0.0.1", port}, [this, first_bytes](Status st) {
      if (!st) {
        error = st.error();
        closed = true;
        return;
      }
      connected = true;
      conn->set_callbacks([this](ByteView d) { received.append(as_chars(d)); },
                          [this](const std::string&) { closed = true; });
      conn->start_reading();
      if (!first_bytes.empty()) conn->write(as_bytes(first_bytes));
    });
  }
  void send(std::string_view bytes) { conn->write(as_bytes(bytes)); }
  void send(const Bytes& bytes) { conn->write(ByteView(bytes)); }
  // Frames received so far (the directory protocol).
  std::vector<nlohmann::json> frames() const {
    std::vector<nlohmann::json> out;
    FrameReader r;
    r.append(as_bytes(received));
    for (auto d = r.next(); d.is_ok(); d = r.next()) out.push_back(*d.value);
    return out;
  }
};

struct HttpReply {
  int status = 0;
  std::string head;
  std::string body;
  bool ok = false;  // a whole response arrived
};

inline HttpReply parse_http_reply(const std::string& raw) {
  HttpReply r;
  auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || end == std::string::npos) return r;
  r.status = std::stoi(raw.substr(9, 3));
  r.head = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  r.ok = true;
  return r;
}

// Sends raw bytes to the HTTP port and returns the reply the server sent before closing.
inline HttpReply http_exchange(uv_loop_t* loop, std::uint16_t port, const std::string& request,
                               std::uint64_t timeout_ms = 3000) {
  RawClient c(loop);
  c.connect(port, request);
  run_until(loop, [&] { return c.closed; }, timeout_ms);
  return parse_http_reply(c.received);
}

inline HttpReply http_get(uv_loop_t* loop, std::uint16_t port, const std::string& path) {
  return http_exchange(loop, port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
}

}  // namespace thor::dir::testing
