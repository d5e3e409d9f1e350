// `thor up`: a whole Thor network on loopback, each role its own child process of this one, so that
// killing a relay is a real relay dying. A plain POSIX supervisor: it spawns, watches and stops
// children; the daemons themselves run their own libuv loops.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/net_address.hpp"
#include "common/result.hpp"

namespace thor::app {

struct LocalNetworkOptions {
  int relays = 5;
  HostPort socks{"127.0.0.1", 9050};
  std::string dir;             // empty: a fresh temporary folder, removed at exit
  bool restart = false;        // restart children that die
  std::string log_level = "info";
  std::string thor_exe;        // the `thor` binary the children run
  double ready_timeout_s = 30;
  int heartbeat_interval_s = 1;
  // Every relay's exit policy. The default lets a test network's exits reach loopback servers while
  // other private ranges stay refused; tests with servers on other addresses replace it.
  std::string exit_policy = "accept 127.0.0.0/8:*, accept [::1]:*, reject private:*, accept *:*";
};

class LocalNetwork {
 public:
  explicit LocalNetwork(LocalNetworkOptions options);
  ~LocalNetwork();
  // Makes keys, starts directory, relays and proxy, waits until a request crosses the network.
  Status start();
  // Watches the children until stop_requested() becomes true (a signal), then stops them all.
  void supervise(const volatile bool& stop_requested);
  void stop_all();
  // Keeps a temporary folder after all (after a failure, so its logs can be read).
  void keep_folder() { temporary_dir_ = false; }

  const std::string& dir() const { return dir_; }
  std::string status_url() const;
  double ready_seconds() const { return ready_seconds_; }

 private:
  struct Child {
    std::string name;
    std::vector<std::string> args;
    std::string log_path;
    pid_t pid = -1;
  };
  Status spawn(Child& child);
  Status wait_for_port(const HostPort& hp, double timeout_s, const Child& child);
  Status wait_until_carrying(double timeout_s);
  bool child_alive(Child& child);

  LocalNetworkOptions opt_;
  std::string dir_;
  bool temporary_dir_ = false;  // made by us: removed when the network stops
  HostPort directory_{"127.0.0.1", 0};
  HostPort http_{"127.0.0.1", 0};
  std::vector<Child> children_;
  double ready_seconds_ = 0;
};

// Fetches http://host:port/path through a SOCKS5 proxy with blocking sockets (used for the
// readiness check and by tests). Returns the whole response (status line, headers, body).
Result<std::string> http_get_via_socks5(const HostPort& socks, const HostPort& target, const std::string& path,
                                        double timeout_s);
// A port on 127.0.0.1 that was free a moment ago.
Result<std::uint16_t> pick_free_port();
// True when something can bind host:port right now.
bool port_is_free(const HostPort& hp);

}  // namespace thor::app
