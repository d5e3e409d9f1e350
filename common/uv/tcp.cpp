#include "common/uv/tcp.hpp"

#include <cstring>

namespace thor::uv {

struct TcpConnection::WriteReq {
  uv_write_t req{};
  Bytes data;
  TcpConnection* conn = nullptr;
  std::shared_ptr<bool> alive;
};

TcpConnection::TcpConnection(uv_loop_t* loop) : loop_(loop), alive_(std::make_shared<bool>(true)) {
  uv_tcp_init(loop, h_.get());
  h_.mark_initialized();
  h_.get()->data = this;
}

TcpConnection::~TcpConnection() {
  *alive_ = false;
  h_.close();
}

void TcpConnection::set_callbacks(DataCallback on_data, CloseCallback on_close) {
  on_data_ = std::move(on_data);
  on_close_ = std::move(on_close);
}

Status TcpConnection::accept_from(uv_stream_t* server) {
  int rc = uv_accept(server, reinterpret_cast<uv_stream_t*>(h_.get()));
  if (rc != 0) return Error{"accept failed: " + error_text(rc)};
  return {};
}

void TcpConnection::connect(const HostPort& numeric, ConnectCallback done) {
  auto addr = numeric_sockaddr(numeric);
  if (!addr) {
    done(Error{addr.error()});
    return;
  }
  connect(reinterpret_cast<const sockaddr*>(&*addr), std::move(done));
}

void TcpConnection::connect(const sockaddr* addr, ConnectCallback done) {
  struct ConnectReq {
    uv_connect_t req{};
    TcpConnection* conn;
    std::shared_ptr<bool> alive;
  };
  on_connect_ = std::move(done);
  connecting_ = true;
  auto* r = new ConnectReq{{}, this, alive_};
  r->req.data = r;
  int rc = uv_tcp_connect(&r->req, h_.get(), addr, [](uv_connect_t* req, int status) {
    std::unique_ptr<ConnectReq> r(static_cast<ConnectReq*>(req->data));
    if (!*r->alive) return;
    TcpConnection* self = r->conn;
    self->connecting_ = false;
    auto cb = std::move(self->on_connect_);
    if (status != 0) {
      self->closed_ = true;
      self->h_.close();
      if (cb) cb(Error{"connect failed: " + error_text(status)});
      return;
    }
    if (cb) cb(Status{});
  });
  if (rc != 0) {
    delete r;
    connecting_ = false;
    auto cb = std::move(on_connect_);
    closed_ = true;
    h_.close();
    if (cb) cb(Error{"connect failed: " + error_text(rc)});
  }
}

void TcpConnection::alloc_cb(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* self = static_cast<TcpConnection*>(h->data);
  if (!self) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  // One buffer per thread, not per connection: libuv calls read_cb right after alloc_cb and
  // on_data consumes the bytes before returning, so a buffer per connection would only hold
  // a read's worth for every idle connection (10,000 streams at 64 KiB: 640 MB).
  static thread_local std::vector<std::uint8_t> shared(kMaxReadSize);
  *buf = uv_buf_init(reinterpret_cast<char*>(shared.data()), static_cast<unsigned>(shared.size()));
}

void TcpConnection::read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<TcpConnection*>(s->data);
  if (!self) return;
  if (nread > 0) {
    if (self->on_data_) self->on_data_(ByteView(reinterpret_cast<const std::uint8_t*>(buf->base), static_cast<std::size_t>(nread)));
    return;
  }
  if (nread == UV_EOF) {
    self->finish("");
  } else if (nread < 0) {
    self->finish(error_text(static_cast<int>(nread)));
  }
}

void TcpConnection::finish(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  reading_ = false;
  h_.close();
  auto cb = std::move(on_close_);
  on_data_ = nullptr;
  if (cb) cb(reason);  // may destroy this; nothing below may touch members
}

void TcpConnection::start_reading() {
  if (closed_ || reading_) return;
  int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(h_.get()), alloc_cb, read_cb);
  if (rc == 0) reading_ = true;
}

void TcpConnection::pause_reading() {
  if (closed_ || !reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(h_.get()));
  reading_ = false;
}

void TcpConnection::resume_reading() { start_reading(); }

void TcpConnection::write(ByteView data) {
  if (closed_ || data.empty()) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(h_.get());
  if (queued_ == 0) {
    // Most writes fit in the socket buffer: send them now and allocate nothing.
    uv_buf_t b = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(data.data())),
                             static_cast<unsigned>(data.size()));
    int n = uv_try_write(stream, &b, 1);
    if (n == static_cast<int>(data.size())) return;
    if (n > 0) data = data.subspan(static_cast<std::size_t>(n));
  }
  write(Bytes(data.begin(), data.end()));
}

void TcpConnection::write(Bytes&& data) {
  if (closed_ || data.empty()) return;
  auto* w = new WriteReq;
  w->data = std::move(data);
  w->conn = this;
  w->alive = alive_;
  w->req.data = w;
  uv_buf_t b = uv_buf_init(reinterpret_cast<char*>(w->data.data()), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(h_.get()), &b, 1, write_cb);
  if (rc != 0) {
    delete w;
    finish(error_text(rc));
    return;
  }
  queued_ += w->data.size();
  if (on_drain_ && queued_ > drain_low_water_) drain_armed_ = true;
}

void TcpConnection::write_cb(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(static_cast<WriteReq*>(req->data));
  if (!*w->alive) return;
  TcpConnection* self = w->conn;
  self->queued_ -= w->data.size();
  if (status != 0) {
    if (status != UV_ECANCELED) self->finish(error_text(status));
    return;
  }
  if (self->close_when_drained_ && self->queued_ == 0) {
    self->finish("");
    return;
  }
  if (self->drain_armed_ && self->queued_ <= self->drain_low_water_) {
    self->drain_armed_ = false;
    if (self->on_drain_) self->on_drain_();
  }
}

void TcpConnection::on_drain(std::size_t low_water, DrainCallback cb) {
  drain_low_water_ = low_water;
  on_drain_ = std::move(cb);
  drain_armed_ = queued_ > low_water;
}

void TcpConnection::close_after_writes() {
  if (closed_) return;
  pause_reading();
  if (queued_ == 0) {
    finish("");
    return;
  }
  close_when_drained_ = true;
}

void TcpConnection::close() {
  if (closed_) return;
  closed_ = true;
  reading_ = false;
  on_data_ = nullptr;
  on_close_ = nullptr;
  h_.close();
}

std::string TcpConnection::peer_address() const {
  if (closed_) return "";
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(h_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return sockaddr_to_string(reinterpret_cast<sockaddr*>(&ss));
}

void TcpConnection::set_nodelay(bool on) {
  if (!closed_) uv_tcp_nodelay(h_.get(), on ? 1 : 0);
}

TcpListener::TcpListener(uv_loop_t* loop) : loop_(loop) {
  uv_tcp_init(loop, h_.get());
  h_.mark_initialized();
  h_.get()->data = this;
}

Status TcpListener::listen(const HostPort& numeric, AcceptCallback on_accept, int backlog) {
  auto addr = numeric_sockaddr(numeric);
  if (!addr) return Error{addr.error()};
  on_accept_ = std::move(on_accept);
  int rc = uv_tcp_bind(h_.get(), reinterpret_cast<const sockaddr*>(&*addr), 0);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(h_.get()), backlog, [](uv_stream_t* server, int status) {
      auto* self = static_cast<TcpListener*>(server->data);
      if (!self || status != 0) return;
      auto conn = std::make_unique<TcpConnection>(self->loop_);
      if (!conn->accept_from(server)) return;
      if (self->on_accept_) self->on_accept_(std::move(conn));
    });
  if (rc != 0) return Error{numeric.to_string() + ": cannot listen: " + error_text(rc)};
  return {};
}

std::uint16_t TcpListener::bound_port() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(h_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

std::shared_ptr<void> Resolver::resolve(uv_loop_t* loop, const std::string& host, std::uint16_t port, Callback cb) {
  struct Pending {
    uv_getaddrinfo_t req{};
    Callback cb;
    std::weak_ptr<int> token;
  };
  auto token = std::make_shared<int>(0);
  auto* p = new Pending{{}, std::move(cb), token};
  p->req.data = p;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string service = std::to_string(port);
  int rc = uv_getaddrinfo(
      loop, &p->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        std::unique_ptr<Pending> p(static_cast<Pending*>(req->data));
        // Only for a real error: libuv's uv_strerror(0) allocates an "unknown error" string it never frees.
        Result<Answer> out = Error{status != 0 ? "resolve failed: " + error_text(status) : std::string()};
        if (status == 0) {
          Answer a;
          for (addrinfo* ai = res; ai; ai = ai->ai_next) {
            if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
            sockaddr_storage ss{};
            std::memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
            a.addresses.push_back(ss);
          }
          if (a.addresses.empty()) out = Error{"resolve failed: no IPv4 or IPv6 address"};
          else out = std::move(a);
        }
        if (res) uv_freeaddrinfo(res);
        if (p->token.lock()) p->cb(std::move(out));
      },
      host.c_str(), service.c_str(), &hints);
  if (rc != 0) {
    auto cb2 = std::move(p->cb);
    delete p;
    cb2(Error{"resolve failed: " + error_text(rc)});
  }
  return token;
}

std::string sockaddr_ip(const sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr->sa_family == AF_INET) {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(addr), buf, sizeof buf);
  } else if (addr->sa_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(addr), buf, sizeof buf);
  }
  return buf;
}

std::string sockaddr_to_string(const sockaddr* addr) {
  if (addr->sa_family == AF_INET)
    return sockaddr_ip(addr) + ":" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in*>(addr)->sin_port));
  if (addr->sa_family == AF_INET6)
    return "[" + sockaddr_ip(addr) + "]:" + std::to_string(ntohs(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_port));
  return "";
}

Result<sockaddr_storage> numeric_sockaddr(const HostPort& hp) {
  sockaddr_storage ss{};
  if (uv_ip4_addr(hp.host.c_str(), hp.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0) return ss;
  if (uv_ip6_addr(hp.host.c_str(), hp.port, reinterpret_cast<sockaddr_in6*>(&ss)) == 0) return ss;
  return Error{"'" + hp.host + "' is not a numeric IPv4 or IPv6 address"};
}

}  // namespace thor::uv
