// thor directory --key KEYFILE [--listen 0.0.0.0:50051] [--http 127.0.0.1:50052] ...
// Runs the directory daemon (directory/directory_server.hpp) until SIGINT or SIGTERM.
#include <cmath>
#include <iostream>
#include <memory>

#include "app/commands.hpp"
#include "app/daemon_runner.hpp"
#include "common/crypto/encoding.hpp"
#include "common/keyfile.hpp"
#include "common/log.hpp"
#include "directory/directory_server.hpp"

namespace thor::app {

namespace {
struct DirectoryOptions {
  std::string key_file;
  std::string listen = "0.0.0.0:50051";
  std::string http = "127.0.0.1:50052";
  double heartbeat_interval = 5;
  double consensus_interval = 60;
  double consensus_lifetime = 3600;
  double http_timeout = 10;
  std::string network = "thor";
  bool test_network = false;
  std::string log_level = "notice";
};

std::uint64_t to_ms(double seconds) { return static_cast<std::uint64_t>(std::llround(seconds * 1000.0)); }

}  // namespace

Runner add_directory_command(CLI::App& app) {
  auto o = std::make_shared<DirectoryOptions>();
  auto* sub = app.add_subcommand("directory", "Run a directory: relays join it, it signs the consensus");
  // Required, on the command line or in the --config file (checked after the file is read).
  sub->add_option("--key", o->key_file, "The directory's secret key file (from 'thor keygen'); required");
  sub->add_option("--listen", o->listen, "Where relays and clients reach the directory protocol (HOST:PORT)")
      ->capture_default_str();
  sub->add_option("--http", o->http, "Where the status pages are served (HOST:PORT; expose it deliberately)")
      ->capture_default_str();
  sub->add_option("--heartbeat-interval", o->heartbeat_interval,
                  "Seconds between relay heartbeats; a relay silent for two intervals leaves the consensus")
      ->capture_default_str()
      ->check(CLI::Range(0.02, 3600.0));
  sub->add_option("--consensus-interval", o->consensus_interval,
                  "Seconds between consensus rebuilds when nothing changes (also how long one stays fresh)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  sub->add_option("--consensus-lifetime", o->consensus_lifetime, "Seconds a consensus stays valid")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 7.0 * 86400.0));
  sub->add_option("--http-timeout", o->http_timeout, "Seconds an HTTP client has to send a whole request")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 3600.0));
  sub->add_option("--network", o->network, "A name for this network, carried in the consensus")->capture_default_str();
  sub->add_flag("--test-network", o->test_network,
                "Give the Exit flag also to relays that exit only to private addresses (loopback test networks)");
  add_common_daemon_flags(*sub, o->log_level);
  sub->footer(
      "Example:\n"
      "  thor keygen directory.key && thor keygen --public directory.key directory.pub\n"
      "  thor directory --key directory.key --listen 0.0.0.0:50051 --http 127.0.0.1:50052\n"
      "Relays and proxies pin directory.pub. See docs/directory.md.");

  return [o, sub]() -> int {
    if (auto st = apply_config_file(sub, "directory"); !st) {
      std::cerr << "thor directory: " << st.error() << "\n";
      return 2;
    }
    if (!apply_log_level(o->log_level, "directory")) return 2;
    if (o->key_file.empty()) {
      std::cerr << "thor directory: --key KEYFILE is required (the directory's secret key, from 'thor keygen')\n";
      return 2;
    }
    auto listen = parse_host_port(o->listen, /*allow_zero=*/true);
    if (!listen) {
      std::cerr << "thor directory: --listen: " << listen.error() << "\n";
      return 2;
    }
    auto http_addr = parse_host_port(o->http, /*allow_zero=*/true);
    if (!http_addr) {
      std::cerr << "thor directory: --http: " << http_addr.error() << "\n";
      return 2;
    }
    if (o->network.empty() || o->network.size() > 64) {
      std::cerr << "thor directory: --network: expected 1-64 characters\n";
      return 2;
    }
    auto key = read_secret_key_file(o->key_file);
    if (!key) {
      std::cerr << "thor directory: " << key.error() << "\n";
      return 1;
    }

    directory::DirectoryServer::Config cfg;
    cfg.listen = *listen;
    cfg.http = *http_addr;
    cfg.identity = *key;
    cfg.network = o->network;
    cfg.heartbeat_interval_ms = to_ms(o->heartbeat_interval);
    cfg.consensus_interval_ms = to_ms(o->consensus_interval);
    cfg.consensus_lifetime_ms = to_ms(o->consensus_lifetime);
    cfg.http_timeout_ms = to_ms(o->http_timeout);
    cfg.test_network = o->test_network;

    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc = 0;
    {
      directory::DirectoryServer server(&loop, std::move(cfg));
      if (auto st = server.start(); !st) {
        std::cerr << "thor directory: " << st.error() << "\n";
        rc = 1;
      } else {
        LOG_NOTICE("directory key " << crypto::to_base64(key->public_key().view()) << " (pin this in relays and proxies)");
        rc = run_until_signal(&loop, [&server] { server.stop(); });
      }
    }
    // Let the close callbacks of every handle run, then free the loop.
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) LOG_WARN("the event loop still had open handles at exit");
    return rc;
  };
}

}  // namespace thor::app
