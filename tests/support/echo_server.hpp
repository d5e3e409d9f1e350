// A loopback TCP server that echoes every byte back on each connection, for tests that need a
// destination (relay exits, proxy streams). Header-only, like the rest of tests/support.
#pragma once

#include <uv.h>

#include <cstdint>
#include <iterator>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>

#include "common/uv/tcp.hpp"

namespace thor::test {

class EchoServer {
 public:
  explicit EchoServer(uv_loop_t* loop) : listener_(loop) {
    auto st = listener_.listen({"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> c) {
      ++accepted_;
      conns_.push_back(std::move(c));
      auto it = std::prev(conns_.end());
      uv::TcpConnection* conn = it->get();
      conn->set_callbacks(
          [this, conn](ByteView d) {
            received_ += d.size();
            conn->write(d);
          },
          [this, it](const std::string&) { conns_.erase(it); });
      conn->start_reading();
    });
    if (!st) throw std::runtime_error("echo server: " + st.error());
  }
  std::uint16_t port() const { return listener_.bound_port(); }
  std::size_t connections_accepted() const { return accepted_; }
  std::size_t connections_open() const { return conns_.size(); }
  std::uint64_t bytes_received() const { return received_; }

 private:
  uv::TcpListener listener_;
  std::list<std::unique_ptr<uv::TcpConnection>> conns_;
  std::size_t accepted_ = 0;
  std::uint64_t received_ = 0;
};

}  // namespace thor::test
