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
  static int runs = 0;
  const std::string out_path = temp_path("child-" + std::to_string(++runs) + ".out");
  ChildResult result;
  {
    thor::test::ChildProcess child(argv, out_path);  // stderr: the test's own
    if (!child.started()) return result;
    auto keep_serving = [&] { loop.run_for(2); };
    if (auto st = child.wait(limit_ms, keep_serving)) {
      result.exited = true;
      result.exit_code = thor::test::ChildProcess::exit_code(st);
    } else {
      child.signal(SIGKILL);
      child.wait(5000, keep_serving);
    }
    result.out = child.stdout_text();
  }
  std::remove(out_path.c_str());
  return result;
}

BackgroundChild::BackgroundChild(TestLoop& loop, const std::vector<std::string>& argv, const std::string& stderr_path)
    : loop_(loop), child_(argv, "", stderr_path) {}

BackgroundChild::~BackgroundChild() { terminate(); }

void BackgroundChild::terminate() {
  if (child_.running()) child_.stop(5000, [this] { loop_.run_for(2); });
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
