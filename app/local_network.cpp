#include "app/local_network.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <thread>

#include "common/crypto/keys.hpp"
#include "common/keyfile.hpp"
#include "common/uv/tcp.hpp"

extern char** environ;

namespace thor::app {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A blocking TCP connection with send/receive timeouts; closed on destruction.
class BlockingSocket {
 public:
  ~BlockingSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status connect(const HostPort& hp, double timeout_s) {
    auto addr = uv::numeric_sockaddr(hp);
    if (!addr) return Error{addr.error()};
    fd_ = ::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Error{std::string("socket: ") + std::strerror(errno)};
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout_s);
    tv.tv_usec = static_cast<suseconds_t>((timeout_s - static_cast<double>(tv.tv_sec)) * 1e6);
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    socklen_t len = addr->ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&*addr), len) != 0)
      return Error{hp.to_string() + ": " + std::strerror(errno)};
    return {};
  }
  Status send_all(ByteView data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error{std::string("send: ") + std::strerror(errno)};
      }
      off += static_cast<std::size_t>(n);
    }
    return {};
  }
  Status recv_exact(MutableByteView out) {
    std::size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::recv(fd_, out.data() + off, out.size() - off, 0);
      if (n == 0) return Error{"connection closed early"};
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error{std::string("recv: ") + std::strerror(errno)};
      }
      off += static_cast<std::size_t>(n);
    }
    return {};
  }
  Result<std::string> recv_all(std::size_t limit) {
    std::string out;
    char buf[16384];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return out;
      if (n < 0) {
        if (errno == EINTR) continue;
        return Error{std::string("recv: ") + std::strerror(errno)};
      }
      out.append(buf, static_cast<std::size_t>(n));
      if (out.size() > limit) return Error{"response too large"};
    }
  }

 private:
  int fd_ = -1;
};

}  // namespace

bool port_is_free(const HostPort& hp) {
  auto addr = uv::numeric_sockaddr(hp);
  if (!addr) return false;
  int fd = ::socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = addr->ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), len) == 0;
  ::close(fd);
  return ok;
}

Result<std::uint16_t> pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{std::string("socket: ") + std::strerror(errno)};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    std::string why = std::strerror(errno);
    ::close(fd);
    return Error{"cannot find a free port on 127.0.0.1: " + why};
  }
  ::close(fd);
  return static_cast<std::uint16_t>(ntohs(a.sin_port));
}

Result<std::string> http_get_via_socks5(const HostPort& socks, const HostPort& target, const std::string& path,
                                        double timeout_s) {
  BlockingSocket s;
  if (auto st = s.connect(socks, timeout_s); !st) return Error{"SOCKS proxy " + st.error()};
  const std::uint8_t greeting[] = {5, 1, 0};
  if (auto st = s.send_all(greeting); !st) return Error{st.error()};
  std::uint8_t choice[2];
  if (auto st = s.recv_exact(choice); !st) return Error{"SOCKS greeting: " + st.error()};
  if (choice[0] != 5 || choice[1] != 0) return Error{"SOCKS proxy refused the no-auth method"};
  Bytes req;
  Writer w(req);
  w.u8(5).u8(1).u8(0).u8(3).u8(static_cast<std::uint8_t>(target.host.size())).bytes(target.host).u16(target.port);
  if (auto st = s.send_all(req); !st) return Error{st.error()};
  std::uint8_t head[4];
  if (auto st = s.recv_exact(head); !st) return Error{"SOCKS reply: " + st.error()};
  if (head[1] != 0) return Error{"SOCKS reply code " + std::to_string(head[1])};
  std::size_t addr_len = head[3] == 1 ? 4 : head[3] == 4 ? 16 : 0;
  if (head[3] == 3) {
    std::uint8_t n;
    if (auto st = s.recv_exact(MutableByteView(&n, 1)); !st) return Error{st.error()};
    addr_len = n;
  }
  Bytes rest(addr_len + 2);
  if (auto st = s.recv_exact(rest); !st) return Error{"SOCKS reply: " + st.error()};
  std::string get = "GET " + path + " HTTP/1.0\r\nHost: " + target.to_string() + "\r\nConnection: close\r\n\r\n";
  if (auto st = s.send_all(as_bytes(get)); !st) return Error{st.error()};
  return s.recv_all(64 * 1024 * 1024);
}

LocalNetwork::LocalNetwork(LocalNetworkOptions options) : opt_(std::move(options)) {}

LocalNetwork::~LocalNetwork() {
  stop_all();
  // A folder we made ourselves goes away with the network; --dir keeps keys and logs.
  if (temporary_dir_ && !dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string LocalNetwork::status_url() const { return "http://" + http_.to_string() + "/status"; }

Status LocalNetwork::spawn(Child& child) {
  int fd = ::open(child.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Error{child.log_path + ": cannot open log: " + std::strerror(errno)};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fd, 1);
  posix_spawn_file_actions_adddup2(&actions, fd, 2);
  // Children must not inherit our blocked or ignored signals.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> argv;
  for (auto& a : child.args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(fd);
  if (rc != 0) return Error{"cannot start " + child.name + ": " + std::strerror(rc)};
  child.pid = pid;
  return {};
}

bool LocalNetwork::child_alive(Child& child) {
  if (child.pid <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(child.pid, &status, WNOHANG);
  if (r == 0) return true;
  std::string how = WIFEXITED(status)   ? "exited with status " + std::to_string(WEXITSTATUS(status))
                    : WIFSIGNALED(status) ? std::string("was killed by signal ") + strsignal(WTERMSIG(status))
                                          : "stopped";
  std::cerr << "thor up: " << child.name << " (pid " << child.pid << ") " << how << "; log: " << child.log_path
            << "\n";
  child.pid = -1;
  return false;
}

Status LocalNetwork::wait_for_port(const HostPort& hp, double timeout_s, const Child& child) {
  auto t0 = Clock::now();
  while (seconds_since(t0) < timeout_s) {
    BlockingSocket s;
    if (s.connect(hp, 0.5)) return {};
    for (auto& c : children_)
      if (c.name == child.name && !child_alive(c))
        return Error{child.name + " did not start; its log " + child.log_path + " says why"};
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Error{child.name + " is not listening on " + hp.to_string() + " after " + std::to_string(timeout_s) + " s"};
}

Status LocalNetwork::wait_until_carrying(double timeout_s) {
  auto t0 = Clock::now();
  std::string last;
  while (seconds_since(t0) < timeout_s) {
    for (auto& c : children_)
      if (!child_alive(c) && !opt_.restart) return Error{c.name + " stopped while the network was starting"};
    auto r = http_get_via_socks5(opt_.socks, http_, "/status", 2.0);
    if (r && r->rfind("HTTP/1.", 0) == 0 && r->find(" 200 ") != std::string::npos) return {};
    last = r ? r->substr(0, r->find('\r')) : r.error();
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return Error{"no request crossed the network within " + std::to_string(static_cast<int>(timeout_s)) +
               " s (last attempt: " + last + "); logs are in " + dir_ + "/logs"};
}

Status LocalNetwork::start() {
  auto t0 = Clock::now();
  if (opt_.relays < 3) return Error{"--relays must be at least 3 (a circuit has three hops)"};
  if (!port_is_free(opt_.socks))
    return Error{opt_.socks.to_string() +
                 ": address already in use (is Tor or another proxy running? choose another with --socks)"};

  namespace fs = std::filesystem;
  if (opt_.dir.empty()) {
    std::string tmpl = (fs::temp_directory_path() / "thor-up-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return Error{"cannot create a temporary folder: " + std::string(std::strerror(errno))};
    dir_ = tmpl;
    temporary_dir_ = true;
  } else {
    dir_ = fs::absolute(opt_.dir).string();
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) return Error{dir_ + ": " + ec.message()};
  }
  std::error_code ec;
  fs::create_directories(dir_ + "/keys", ec);
  fs::create_directories(dir_ + "/logs", ec);
  if (ec) return Error{dir_ + ": " + ec.message()};

  // Keys: reused when --dir already holds them, so a network can be restarted with the same identities.
  auto ensure_key = [&](const std::string& name) -> Result<crypto::IdentityKey> {
    std::string path = dir_ + "/keys/" + name + ".key";
    if (fs::exists(path)) return read_secret_key_file(path);
    auto key = crypto::IdentityKey::generate(crypto::system_rng());
    if (auto st = write_secret_key_file(path, key); !st) return Error{st.error()};
    return key;
  };
  auto dir_key = ensure_key("directory");
  if (!dir_key) return Error{dir_key.error()};
  std::string dir_pub = dir_ + "/keys/directory.pub";
  if (!fs::exists(dir_pub))
    if (auto st = write_public_key_file(dir_pub, dir_key->public_key()); !st) return st;

  auto port = pick_free_port();
  if (!port) return Error{port.error()};
  directory_.port = *port;
  port = pick_free_port();
  if (!port) return Error{port.error()};
  http_.port = *port;

  const std::string& exe = opt_.thor_exe;
  const std::string level = "--log-level=" + opt_.log_level;
  children_.push_back({"directory",
                       {exe, "directory", "--key", dir_ + "/keys/directory.key", "--listen", directory_.to_string(),
                        "--http", http_.to_string(), "--heartbeat-interval", std::to_string(opt_.heartbeat_interval_s),
                        level},
                       dir_ + "/logs/directory.log"});
  if (auto st = spawn(children_.back()); !st) return st;

  std::vector<HostPort> relay_addrs;
  for (int i = 1; i <= opt_.relays; ++i) {
    std::string name = "relay" + std::to_string(i);
    auto key = ensure_key(name);
    if (!key) return Error{key.error()};
    port = pick_free_port();
    if (!port) return Error{port.error()};
    HostPort listen{"127.0.0.1", *port};
    relay_addrs.push_back(listen);
    children_.push_back({name,
                         {exe, "relay", "--key", dir_ + "/keys/" + name + ".key", "--directory", directory_.to_string(),
                          "--directory-key", dir_pub, "--listen", listen.to_string(), "--nickname", "thor" + name,
                          "--exit-policy", opt_.exit_policy, level},
                         dir_ + "/logs/" + name + ".log"});
  }
  if (auto st = wait_for_port(directory_, 5, children_[0]); !st) return st;
  for (std::size_t i = 1; i < children_.size(); ++i)
    if (auto st = spawn(children_[i]); !st) return st;

  children_.push_back({"proxy",
                       {exe, "proxy", "--directory", directory_.to_string(), "--directory-key", dir_pub, "--socks",
                        opt_.socks.to_string(), "--no-distinct-subnets", level},
                       dir_ + "/logs/proxy.log"});
  if (auto st = spawn(children_.back()); !st) return st;
  if (auto st = wait_for_port(opt_.socks, 5, children_.back()); !st) return st;
  if (auto st = wait_until_carrying(opt_.ready_timeout_s); !st) return st;
  ready_seconds_ = seconds_since(t0);
  return {};
}

void LocalNetwork::supervise(const volatile bool& stop_requested) {
  while (!stop_requested) {
    for (auto& c : children_) {
      if (c.pid > 0 && !child_alive(c) && opt_.restart && !stop_requested) {
        std::cerr << "thor up: restarting " << c.name << "\n";
        if (auto st = spawn(c); !st) std::cerr << "thor up: " << st.error() << "\n";
      }
    }
    bool any = false;
    for (auto& c : children_) any |= c.pid > 0;
    if (!any) {
      std::cerr << "thor up: every child has stopped\n";
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

void LocalNetwork::stop_all() {
  // Proxy first, directory last, so nothing logs errors about peers that left before it.
  for (auto it = children_.rbegin(); it != children_.rend(); ++it)
    if (it->pid > 0) ::kill(it->pid, SIGTERM);
  auto t0 = Clock::now();
  for (;;) {
    bool any = false;
    for (auto& c : children_) {
      if (c.pid <= 0) continue;
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) == c.pid) c.pid = -1;
      else any = true;
    }
    if (!any) return;
    if (seconds_since(t0) > 5) {
      for (auto& c : children_)
        if (c.pid > 0) {
          std::cerr << "thor up: " << c.name << " did not stop within 5 s; killing it\n";
          ::kill(c.pid, SIGKILL);
          ::waitpid(c.pid, nullptr, 0);
          c.pid = -1;
        }
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace thor::app
