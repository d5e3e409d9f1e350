#include "tests/proxy/proxy_test_support.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "common/crypto/random.hpp"
#include "common/dir/exit_policy.hpp"

namespace thor::proxy::test {

// ---- servers -----------------------------------------------------------------------------------

FileServer::FileServer(uv_loop_t* loop, Bytes body) : loop_(loop), body_(std::move(body)), listener_(loop) {
  auto st = listener_.listen({"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> tcp) {
    conns_.push_back(Conn{std::move(tcp), {}, false});
    auto it = std::prev(conns_.end());
    Conn* c = &*it;
    c->tcp->set_callbacks(
        [this, c](ByteView data) {
          if (c->answered) return;
          c->head.append(reinterpret_cast<const char*>(data.data()), data.size());
          if (c->head.find("\r\n\r\n") == std::string::npos) return;
          c->answered = true;
          ++requests_;
          std::string head = "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                             std::to_string(body_.size()) + "\r\n\r\n";
          c->tcp->write(ByteView(reinterpret_cast<const std::uint8_t*>(head.data()), head.size()));
          c->tcp->write(ByteView(body_));
          c->tcp->close_after_writes();
        },
        [this, it](const std::string&) { conns_.erase(it); });
    c->tcp->start_reading();
  });
  if (!st) throw std::runtime_error(st.error());
}

EchoServer::EchoServer(uv_loop_t* loop) : loop_(loop), listener_(loop) {
  auto st = listener_.listen({"127.0.0.1", 0}, [this](std::unique_ptr<uv::TcpConnection> tcp) {
    conns_.push_back(std::move(tcp));
    auto it = std::prev(conns_.end());
    uv::TcpConnection* c = it->get();
    c->set_callbacks([c](ByteView data) { c->write(data); }, [this, it](const std::string&) { conns_.erase(it); });
    c->start_reading();
  });
  if (!st) throw std::runtime_error(st.error());
}

std::size_t EchoServer::open_connections() const { return conns_.size(); }

// ---- raw client --------------------------------------------------------------------------------

RawClient::RawClient(uv_loop_t* loop, std::uint16_t port) : tcp_(std::make_unique<uv::TcpConnection>(loop)) {
  tcp_->connect(HostPort{"127.0.0.1", port}, [this](Status st) {
    if (!st) {
      closed_ = true;
      return;
    }
    connected_ = true;
    tcp_->set_callbacks([this](ByteView data) { received_.insert(received_.end(), data.begin(), data.end()); },
                        [this](const std::string&) { closed_ = true; });
    tcp_->start_reading();
    if (!pending_.empty()) tcp_->write(std::move(pending_));
    pending_.clear();
  });
}

void RawClient::send(ByteView data) {
  if (!connected_) {
    pending_.insert(pending_.end(), data.begin(), data.end());
    return;
  }
  tcp_->write(data);
}

void RawClient::send(const std::string& text) {
  send(ByteView(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

Bytes socks5_greeting_noauth() { return {0x05, 0x01, 0x00}; }
Bytes socks5_greeting_userpass() { return {0x05, 0x01, 0x02}; }

Bytes socks5_auth(const std::string& user, const std::string& pass) {
  Bytes b{0x01, static_cast<std::uint8_t>(user.size())};
  b.insert(b.end(), user.begin(), user.end());
  b.push_back(static_cast<std::uint8_t>(pass.size()));
  b.insert(b.end(), pass.begin(), pass.end());
  return b;
}

Bytes socks5_request(std::uint8_t cmd, const std::string& host, std::uint16_t port) {
  Bytes b{0x05, cmd, 0x00};
  unsigned a[4];
  char tail;
  if (std::sscanf(host.c_str(), "%u.%u.%u.%u%c", &a[0], &a[1], &a[2], &a[3], &tail) == 4) {
    b.push_back(0x01);
    for (unsigned x : a) b.push_back(static_cast<std::uint8_t>(x));
  } else {
    b.push_back(0x03);
    b.push_back(static_cast<std::uint8_t>(host.size()));
    b.insert(b.end(), host.begin(), host.end());
  }
  b.push_back(static_cast<std::uint8_t>(port >> 8));
  b.push_back(static_cast<std::uint8_t>(port & 0xFF));
  return b;
}

// ---- network -----------------------------------------------------------------------------------

Network::Network(TestLoop& loop, NetworkOptions options)
    : loop_(loop), options_(std::move(options)), directory_key_(crypto::IdentityKey::generate(crypto::system_rng())) {
  directory::DirectoryServer::Config dc;
  dc.listen = {"127.0.0.1", 0};
  dc.http = {"127.0.0.1", 0};
  dc.identity = directory_key_;
  dc.heartbeat_interval_ms = 300;
  dc.consensus_interval_ms = 1000;
  dc.consensus_debounce_ms = 100;
  dc.consensus_lifetime_ms = 120'000;
  dc.test_network = true;
  directory_ = std::make_unique<directory::DirectoryServer>(loop.get(), dc);
  if (auto st = directory_->start(); !st) throw std::runtime_error("directory: " + st.error());
  for (int i = 0; i < options_.relays; ++i) {
    add_relay([&](relay::RelayConfig& c) {
      if (options_.customize_relay) options_.customize_relay(i, c);
    });
  }
  if (!wait_for_consensus(static_cast<std::size_t>(options_.relays)))
    throw std::runtime_error("the relays did not all reach the consensus");
  if (options_.start_proxy) start_proxy();
}

Network::~Network() {
  if (proxy_) proxy_->stop();
  for (std::size_t i = 0; i < relays_.size(); ++i)
    if (!stopped_[i]) relays_[i]->stop();
  directory_->stop();
  loop_.run_for(20);  // let the closes go out before the objects go away
}

int Network::add_relay(const std::function<void(relay::RelayConfig&)>& customize) {
  const int i = static_cast<int>(relays_.size());
  relay::RelayConfig c;
  c.identity = crypto::IdentityKey::generate(crypto::system_rng());
  c.listen = {"127.0.0.1", 0};
  c.directory = HostPort{"127.0.0.1", directory_->listen_port()};
  c.directory_key = directory_key_.public_key();
  c.exit_policy = ExitPolicy::loopback_test_exit();
  c.nickname = "relay" + std::to_string(i);
  c.onion_key_rotation_ms = 0;
  if (customize) customize(c);
  fingerprints_.push_back(crypto::fingerprint(c.identity.public_key()));
  relays_.push_back(std::make_unique<relay::RelayServer>(loop_.get(), std::move(c)));
  stopped_.push_back(false);
  if (auto st = relays_.back()->start(); !st) throw std::runtime_error("relay: " + st.error());
  return i;
}

void Network::stop_relay(int i) {
  relays_.at(static_cast<std::size_t>(i))->stop();
  stopped_.at(static_cast<std::size_t>(i)) = true;
}

bool Network::wait_for_consensus(std::size_t count, std::uint64_t limit_ms) {
  return loop_.run_until(
      [&] {
        std::size_t running = 0;
        for (const auto& r : directory_->consensus().relays)
          if (r.has(dir::kFlagRunning)) ++running;
        return running == count;
      },
      limit_ms);
}

void Network::start_proxy() {
  ProxyConfig pc;
  pc.socks = {"127.0.0.1", 0};
  pc.directory = {"127.0.0.1", directory_->listen_port()};
  pc.directory_key = directory_key_.public_key();
  pc.allow_same_subnet = true;
  pc.handshake_timeout_ms = 2000;
  pc.request_timeout_ms = 15'000;
  pc.circuit_build_timeout_ms = 3000;
  pc.consensus_retry_min_ms = 200;
  pc.consensus_retry_max_ms = 1000;
  if (options_.customize_proxy) options_.customize_proxy(pc);
  proxy_ = std::make_unique<ProxyServer>(loop_.get(), pc);
  if (auto st = proxy_->start(); !st) throw std::runtime_error("proxy: " + st.error());
}

int Network::relay_index(const std::string& fingerprint) const {
  for (std::size_t i = 0; i < fingerprints_.size(); ++i)
    if (fingerprints_[i] == fingerprint) return static_cast<int>(i);
  return -1;
}

// ---- child processes ---------------------------------------------------------------------------

ChildResult run_child(TestLoop& loop, const std::vector<std::string>& argv, std::uint64_t limit_ms) {
  struct State {
    ChildResult result;
    bool pipe_done = false;
  } state;
  uv::Handle<uv_pipe_t> pipe;
  uv_pipe_init(loop.get(), pipe.get(), 0);
  pipe.mark_initialized();
  pipe.get()->data = &state;
  uv::Handle<uv_process_t> proc;

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(pipe.get());
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t opts{};
  opts.file = args[0];
  opts.args = args.data();
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = [](uv_process_t* p, int64_t status, int signal) {
    auto* s = static_cast<State*>(p->data);
    if (!s) return;
    s->result.exited = true;
    s->result.exit_code = signal != 0 ? 128 + signal : static_cast<int>(status);
  };
  if (uv_spawn(loop.get(), proc.get(), &opts) != 0) {
    proc.mark_initialized();  // uv_spawn initialises the handle even when it fails
    return state.result;
  }
  proc.mark_initialized();
  proc.get()->data = &state;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(pipe.get()),
      [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
        static char chunk[65536];
        *buf = uv_buf_init(chunk, sizeof chunk);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* st = static_cast<State*>(s->data);
        if (!st) return;
        if (n > 0) st->result.out.append(buf->base, static_cast<std::size_t>(n));
        if (n < 0) {
          st->pipe_done = true;
          uv_read_stop(s);
        }
      });
  const bool done = loop.run_until([&] { return state.result.exited && state.pipe_done; }, limit_ms);
  if (!done && !state.result.exited) {
    uv_process_kill(proc.get(), SIGKILL);
    loop.run_until([&] { return state.result.exited; }, 5000);
    state.result.exited = false;
  }
  return state.result;
}

BackgroundChild::BackgroundChild(TestLoop& loop, const std::vector<std::string>& argv, const std::string& stderr_path)
    : loop_(loop) {
  std::vector<std::string> full = argv;
  if (!stderr_path.empty()) {
    // The shell only redirects; exec leaves the real program as the child.
    full = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>\"" + stderr_path + "\""};
    full.insert(full.end(), argv.begin(), argv.end());
  }
  std::vector<char*> args;
  for (const auto& a : full) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  uv_process_options_t opts{};
  opts.file = args[0];
  opts.args = args.data();
  opts.stdio = stdio;
  opts.stdio_count = 3;
  opts.exit_cb = [](uv_process_t* p, int64_t status, int signal) {
    auto* self = static_cast<BackgroundChild*>(p->data);
    if (!self) return;
    self->exited_ = true;
    self->exit_code_ = signal != 0 ? 128 + signal : static_cast<int>(status);
  };
  const int rc = uv_spawn(loop.get(), proc_.get(), &opts);
  proc_.mark_initialized();
  proc_.get()->data = this;
  started_ = rc == 0;
}

BackgroundChild::~BackgroundChild() { terminate(); }

void BackgroundChild::terminate() {
  if (!running()) return;
  uv_process_kill(proc_.get(), SIGTERM);
  if (!loop_.run_until([&] { return exited_; }, 5000)) {
    uv_process_kill(proc_.get(), SIGKILL);
    loop_.run_until([&] { return exited_; }, 5000);
  }
}

bool have_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::string p(path);
  std::size_t start = 0;
  while (start <= p.size()) {
    std::size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string candidate = p.substr(start, end - start) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

Bytes test_body(std::size_t n, std::uint64_t seed) {
  Bytes b(n);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b[i] = static_cast<std::uint8_t>(x);
  }
  return b;
}

std::string sha256_hex_of_file(const std::string& path) {
  std::string cmd = "sha256sum '" + path + "'";
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return "";
  char buf[65] = {};
  std::size_t n = std::fread(buf, 1, 64, f);
  pclose(f);
  return n == 64 ? std::string(buf, 64) : "";
}

std::string temp_path(const std::string& name) {
  return "/tmp/thor-proxy-test-" + std::to_string(getpid()) + "-" + name;
}

}  // namespace thor::proxy::test

namespace thor::proxy::test {

bool file_equals(const std::string& path, const Bytes& expected) {
  std::ifstream f(path, std::ios::binary);
  Bytes got((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return got == expected;
}

}  // namespace thor::proxy::test
