// A TCP connection and a TCP listener on a libuv loop.
//
// TcpConnection moves bytes: on_data gets what arrived, write() queues bytes whose buffers live until
// libuv's write callback, pause_reading()/resume_reading() are the back-pressure switch. Whoever owns
// the TcpConnection decides when it ends: close() or destroying it; on_close runs once either way
// (peer EOF, error, or local close) unless the owner is being destroyed.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/bytes.hpp"
#include "common/net_address.hpp"
#include "common/result.hpp"
#include "common/uv/handle.hpp"

namespace thor::uv {

// The most one read from a socket delivers (one buffer per thread): what a connection may add to a
// queue before its owner can pause it, so back-pressure bounds are "high water + one read".
// Up to four full link records per read: a process that was descheduled while its neighbours
// wrote catches up in fewer syscalls and flushes (one batch of cells per read) — 4% less CPU in a
// 16-stream download than with 64 KiB.
constexpr std::size_t kMaxReadSize = 256 * 1024;

class TcpConnection {
 public:
  using DataCallback = std::function<void(ByteView data)>;
  // reason: empty for a clean EOF from the peer, else what went wrong.
  using CloseCallback = std::function<void(const std::string& reason)>;
  using ConnectCallback = std::function<void(Status result)>;
  using DrainCallback = std::function<void()>;

  explicit TcpConnection(uv_loop_t* loop);
  ~TcpConnection();
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  uv_tcp_t* handle() { return h_.get(); }
  uv_loop_t* loop() const { return loop_; }

  // Connects to a numeric address (IPv4 or IPv6 literal). Names are resolved by the caller (Resolver).
  void connect(const HostPort& numeric, ConnectCallback done);
  // Connects to a resolved sockaddr.
  void connect(const sockaddr* addr, ConnectCallback done);

  void set_callbacks(DataCallback on_data, CloseCallback on_close);
  void start_reading();
  void pause_reading();
  void resume_reading();
  bool reading() const { return reading_; }

  // Queues bytes for sending. The data is copied into a buffer owned until the write completes.
  void write(ByteView data);
  void write(Bytes&& data);
  // Bytes handed to write() that libuv has not finished sending.
  std::size_t queued_bytes() const { return queued_; }
  // Called once queued_bytes() falls to or below low_water after having been above it.
  void on_drain(std::size_t low_water, DrainCallback cb);

  // Sends what is queued, then closes (a graceful shutdown after a final reply).
  void close_after_writes();
  void close();
  bool closed() const { return closed_; }

  std::string peer_address() const;  // "1.2.3.4:5678", or "" when unknown
  void set_nodelay(bool on);

  // Adopt an accepted connection (used by TcpListener).
  Status accept_from(uv_stream_t* server);

 private:
  struct WriteReq;
  static void alloc_cb(uv_handle_t*, std::size_t, uv_buf_t*);
  static void read_cb(uv_stream_t*, ssize_t, const uv_buf_t*);
  static void write_cb(uv_write_t*, int);
  void finish(const std::string& reason);

  uv_loop_t* loop_;
  Handle<uv_tcp_t> h_;
  DataCallback on_data_;
  CloseCallback on_close_;
  ConnectCallback on_connect_;
  DrainCallback on_drain_;
  std::size_t drain_low_water_ = 0;
  bool drain_armed_ = false;
  std::size_t queued_ = 0;
  bool reading_ = false;
  bool closed_ = false;
  bool close_when_drained_ = false;
  bool connecting_ = false;
  std::shared_ptr<bool> alive_;  // lets callbacks in flight see that the object is gone
};

class TcpListener {
 public:
  using AcceptCallback = std::function<void(std::unique_ptr<TcpConnection> conn)>;
  explicit TcpListener(uv_loop_t* loop);
  // Binds and listens. Errors say which address and why ("127.0.0.1:9050: address already in use").
  Status listen(const HostPort& numeric, AcceptCallback on_accept, int backlog = 511);
  // The port actually bound (useful with port 0).
  std::uint16_t bound_port() const;
  void close() { h_.close(); }

 private:
  uv_loop_t* loop_;
  Handle<uv_tcp_t> h_;
  AcceptCallback on_accept_;
};

// Resolves host names asynchronously (uv_getaddrinfo). The callback gets every address found, or an
// error. Cancel by destroying the returned token: the callback then never runs.
class Resolver {
 public:
  struct Answer {
    std::vector<sockaddr_storage> addresses;
  };
  using Callback = std::function<void(Result<Answer>)>;
  // Returns a token; keep it alive until the answer arrives.
  static std::shared_ptr<void> resolve(uv_loop_t* loop, const std::string& host, std::uint16_t port, Callback cb);
};

std::string sockaddr_to_string(const sockaddr* addr);  // "1.2.3.4:80", "[::1]:80"
std::string sockaddr_ip(const sockaddr* addr);         // "1.2.3.4", "::1"
Result<sockaddr_storage> numeric_sockaddr(const HostPort& hp);

}  // namespace thor::uv
