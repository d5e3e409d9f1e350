// thor proxy --directory HOST:PORT --directory-key PUBFILE [--socks 127.0.0.1:9050]
//            [--http-connect HOST:PORT] [--no-distinct-subnets] [--config FILE] [--log-level L]
// Runs the user's SOCKS proxy (proxy/ProxyServer) until SIGINT/SIGTERM; this file only maps flags.
#include <sys/resource.h>
#include <uv.h>

#include <cmath>
#include <iostream>
#include <memory>

#include "app/commands.hpp"
#include "app/daemon_runner.hpp"
#include "common/keyfile.hpp"
#include "common/log.hpp"
#include "proxy/proxy_server.hpp"

namespace thor::app {

namespace {
struct ProxyFlags {
  std::string directory;
  std::string directory_key_file;
  std::string socks = "127.0.0.1:9050";
  std::string http_connect;
  bool no_distinct_subnets = false;
  double dirtiness = 600;
  double build_timeout = 10;
  std::size_t ready_circuits = proxy::ProxyConfig{}.ready_circuits;
  double handshake_timeout = 10;
  double request_timeout = 60;
  std::size_t max_clients = proxy::ProxyConfig{}.max_clients;
  std::size_t max_streams_per_circuit = proxy::ProxyConfig{}.max_streams_per_circuit;
  int exit_retries = proxy::ProxyConfig{}.exit_retries;
  int circuit_retries = proxy::ProxyConfig{}.circuit_retries;
  std::string log_level = "notice";
};

std::uint64_t to_ms(double seconds) { return static_cast<std::uint64_t>(std::llround(seconds * 1000.0)); }

// Each application connection holds a descriptor: allow as many as the system lets this process have.
void raise_descriptor_limit(std::size_t wanted) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
  rl.rlim_cur = rl.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < wanted + 64)
    LOG_NOTICE("this process may open " << rl.rlim_cur << " files; --max-clients is " << wanted);
}

int fail(const std::string& line) {
  std::cerr << "thor proxy: " << line << "\n";
  return 1;
}

Result<HostPort> numeric_listen(const std::string& flag, const std::string& text) {
  auto hp = parse_host_port(text, /*allow_zero=*/true);
  if (!hp) return Error{flag + ": " + hp.error()};
  if (!is_ipv4_literal(hp->host) && !is_ipv6_literal(hp->host))
    return Error{flag + ": '" + hp->host + "' is not a numeric IP address (use 127.0.0.1)"};
  return *hp;
}
}  // namespace

Runner add_proxy_command(CLI::App& app) {
  auto f = std::make_shared<ProxyFlags>();
  auto* sub = app.add_subcommand("proxy", "Run the SOCKS5 proxy that carries applications' connections over Thor");
  // Required, on the command line or in the --config file (checked after the file is read).
  sub->add_option("--directory", f->directory, "The directory's client port, HOST:PORT; required");
  sub->add_option("--directory-key", f->directory_key_file, "The directory's public key file (pinned); required");
  sub->add_option("--socks", f->socks, "Where applications connect (SOCKS4a/5), IP:PORT")->capture_default_str();
  sub->add_option("--http-connect", f->http_connect,
                  "Also accept HTTP CONNECT proxy requests here, IP:PORT (for programs without SOCKS)");
  sub->add_flag("--no-distinct-subnets", f->no_distinct_subnets,
                "Allow a circuit's relays to share a /16 (test networks on one host)");
  sub->add_option("--max-circuit-dirtiness", f->dirtiness,
                  "Seconds a circuit takes new streams after its first one")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 7.0 * 86400.0));
  sub->add_option("--circuit-build-timeout", f->build_timeout, "Seconds before a circuit build is abandoned")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  sub->add_option("--ready-circuits", f->ready_circuits, "Circuits kept built ahead of requests")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  sub->add_option("--handshake-timeout", f->handshake_timeout,
                  "Seconds a client has to send a complete SOCKS or HTTP CONNECT request")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  sub->add_option("--request-timeout", f->request_timeout, "Seconds before a request is answered with a timeout")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 3600.0));
  sub->add_option("--max-clients", f->max_clients, "Client connections open at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000));
  sub->add_option("--max-streams-per-circuit", f->max_streams_per_circuit)
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  sub->add_option("--exit-retries", f->exit_retries, "Other exits tried when an exit refuses a stream")
      ->capture_default_str()
      ->check(CLI::Range(0, 10));
  sub->add_option("--circuit-retries", f->circuit_retries, "New circuits tried when one dies before CONNECTED")
      ->capture_default_str()
      ->check(CLI::Range(0, 10));
  add_common_daemon_flags(*sub, f->log_level);
  sub->footer(
      "Example:\n"
      "  thor proxy --directory 203.0.113.5:50051 --directory-key directory.pub --socks 127.0.0.1:9050\n"
      "  curl --socks5-hostname 127.0.0.1:9050 https://example.com/\n"
      "See docs/user-guide.md.");

  return [f, sub]() -> int {
    if (auto st = apply_config_file(sub, "proxy"); !st) return fail(st.error());
    if (!apply_log_level(f->log_level, "proxy")) return 2;
    if (f->directory.empty()) return fail("--directory HOST:PORT is required (the directory's client port)");
    if (f->directory_key_file.empty())
      return fail("--directory-key PUBFILE is required (the directory's public key)");
    proxy::ProxyConfig cfg;
    auto dir = parse_host_port(f->directory);
    if (!dir) return fail("--directory: " + dir.error());
    cfg.directory = *dir;
    auto dir_key = read_public_key_file(f->directory_key_file);
    if (!dir_key) return fail(dir_key.error());
    cfg.directory_key = *dir_key;
    auto socks = numeric_listen("--socks", f->socks);
    if (!socks) return fail(socks.error());
    cfg.socks = *socks;
    if (!f->http_connect.empty()) {
      auto http = numeric_listen("--http-connect", f->http_connect);
      if (!http) return fail(http.error());
      cfg.http_connect = *http;
    }
    cfg.allow_same_subnet = f->no_distinct_subnets;
    cfg.circuit_dirtiness_ms = to_ms(f->dirtiness);
    cfg.circuit_build_timeout_ms = to_ms(f->build_timeout);
    cfg.ready_circuits = f->ready_circuits;
    cfg.handshake_timeout_ms = to_ms(f->handshake_timeout);
    cfg.request_timeout_ms = to_ms(f->request_timeout);
    cfg.max_clients = f->max_clients;
    cfg.max_streams_per_circuit = f->max_streams_per_circuit;
    cfg.exit_retries = f->exit_retries;
    cfg.circuit_retries = f->circuit_retries;

    raise_descriptor_limit(cfg.max_clients);
    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc = 0;
    {
      proxy::ProxyServer server(&loop, std::move(cfg));
      if (auto st = server.start(); !st) {
        rc = fail(st.error());
      } else {
        rc = run_until_signal(&loop, [&server] { server.stop(); });
      }
    }
    // Let every handle's close callback run, then release the loop.
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
  };
}

}  // namespace thor::app
