// thor up [--relays N] [--socks 127.0.0.1:9050] [--dir DIR] [--restart] [--exit-policy RULES]
// A whole Thor network on loopback in one command.
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <memory>

#include "app/commands.hpp"
#include "app/local_network.hpp"

namespace thor::app {

namespace {
volatile bool g_stop = false;
void on_stop_signal(int) { g_stop = true; }

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "thor";
  buf[n] = '\0';
  return buf;
}

struct UpFlags {
  int relays = 5;
  std::string socks = "127.0.0.1:9050";
  std::string dir;
  bool restart = false;
  std::string log_level = "info";
  double timeout = 30;
  std::string exit_policy = LocalNetworkOptions{}.exit_policy;
};
}  // namespace

Runner add_up_command(CLI::App& app) {
  auto f = std::make_shared<UpFlags>();
  auto* sub = app.add_subcommand("up", "Start a whole local Thor network (directory, relays, proxy) on loopback");
  sub->add_option("--relays", f->relays, "How many relays (at least 3)")->capture_default_str();
  sub->add_option("--socks", f->socks, "Where the proxy listens for SOCKS5")->capture_default_str();
  sub->add_option("--dir", f->dir, "Folder for keys and logs, kept; default: a new temporary folder, removed at exit (kept after a failure)");
  sub->add_flag("--restart", f->restart, "Restart a child that dies");
  sub->add_option("--log-level", f->log_level, "Log level of the children")->capture_default_str();
  sub->add_option("--timeout", f->timeout, "Seconds to wait for the network to carry a first request")
      ->capture_default_str();
  sub->add_option("--exit-policy", f->exit_policy,
                  "Every relay's exit policy; it must accept 127.0.0.1, where the readiness check goes "
                  "(default: loopback allowed, other private ranges refused)")
      ->capture_default_str();
  sub->set_config("--config", "", "Read options from a TOML/INI file");

  return [f]() -> int {
    auto socks = parse_host_port(f->socks);
    if (!socks) {
      std::cerr << "thor up: --socks: " << socks.error() << "\n";
      return 2;
    }
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);

    LocalNetworkOptions o;
    o.relays = f->relays;
    o.socks = *socks;
    o.dir = f->dir;
    o.restart = f->restart;
    o.log_level = f->log_level;
    o.thor_exe = self_exe();
    o.ready_timeout_s = f->timeout;
    o.exit_policy = f->exit_policy;
    LocalNetwork net(o);
    if (auto st = net.start(); !st) {
      std::cerr << "thor up: " << st.error() << "\n";
      net.stop_all();
      net.keep_folder();
      return 1;
    }
    std::cout << "Thor network ready in " << std::fixed << std::setprecision(2) << net.ready_seconds() << " s: 1 directory, "
              << o.relays << " relays, 1 proxy\n"
              << "  SOCKS5 proxy:     " << o.socks.to_string() << "\n"
              << "  directory status: " << net.status_url() << "\n"
              << "  keys and logs:    " << net.dir() << "\n"
              << "  try:              curl --socks5-hostname " << o.socks.to_string() << " " << net.status_url() << "\n"
              << "Press Ctrl-C to stop." << std::endl;
    net.supervise(g_stop);
    std::cout << "thor up: stopping" << std::endl;
    net.stop_all();
    return 0;
  };
}

}  // namespace thor::app
