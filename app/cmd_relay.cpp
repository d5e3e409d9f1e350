// thor relay --key KEYFILE --directory HOST:PORT --directory-key PUBFILE [--listen 0.0.0.0:9001]
//            [--advertise HOST:PORT] [--exit-policy RULES] [--nickname NAME] [--bandwidth BYTES]
//            [--config FILE] [--log-level L]
// Runs a relay until SIGINT/SIGTERM. The logic is relay/RelayServer; this file only maps flags.
#include <uv.h>

#include <cctype>
#include <iostream>
#include <memory>

#include "app/commands.hpp"
#include "app/daemon_runner.hpp"
#include "common/crypto/keys.hpp"
#include "common/keyfile.hpp"
#include "common/log.hpp"
#include "relay/relay_server.hpp"

namespace thor::app {

namespace {
struct RelayFlags {
  std::string key_file;
  std::string directory;
  std::string directory_key_file;
  std::string listen = "0.0.0.0:9001";
  std::string advertise;
  std::string exit_policy = "reject *:*";
  std::string nickname;
  std::uint64_t bandwidth = 1'000'000;
  std::uint64_t onion_key_rotation_s = 7 * 24 * 3600;
  std::size_t max_circuits_per_link = relay::RelayLimits{}.max_circuits_per_link;
  std::size_t max_circuits_per_relay_link = relay::RelayLimits{}.max_circuits_per_relay_link;
  std::size_t max_streams_per_circuit = relay::RelayLimits{}.max_streams_per_circuit;
  std::size_t max_links = relay::RelayLimits{}.max_links;
  std::uint64_t link_idle_timeout_s = relay::RelayLimits{}.link_idle_timeout_ms / 1000;
  std::uint64_t circuit_idle_timeout_s = relay::RelayLimits{}.circuit_idle_timeout_ms / 1000;
  std::string log_level = "notice";
};

bool valid_nickname(const std::string& n) {
  if (n.empty() || n.size() > 19) return false;
  for (char ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) return false;
  return true;
}

int fail(const std::string& line) {
  std::cerr << "thor relay: " << line << "\n";
  return 1;
}

}  // namespace

Runner add_relay_command(CLI::App& app) {
  auto f = std::make_shared<RelayFlags>();
  auto* sub = app.add_subcommand("relay", "Run a relay (onion router)");
  // Required, either here or in the --config file (checked after the file is read).
  sub->add_option("--key", f->key_file, "The relay's identity key file (from 'thor keygen'); required");
  sub->add_option("--directory", f->directory, "The directory's relay port, HOST:PORT; required");
  sub->add_option("--directory-key", f->directory_key_file, "The directory's public key file (pinned); required");
  sub->add_option("--listen", f->listen, "Where to accept links, IP:PORT")->capture_default_str();
  sub->add_option("--advertise", f->advertise,
                  "The address published in the descriptor, IP:PORT (default: the listen address; when "
                  "listening on 0.0.0.0, the machine's first public IPv4 address)");
  sub->add_option("--exit-policy", f->exit_policy,
                  "Exit rules, e.g. \"accept *:80, accept *:443, reject *:*\" (private addresses are refused "
                  "unless accepted explicitly)")
      ->capture_default_str();
  sub->add_option("--nickname", f->nickname, "1-19 letters and digits (default: thor + fingerprint prefix)");
  sub->add_option("--bandwidth", f->bandwidth, "Advertised bandwidth in bytes per second")->capture_default_str();
  sub->add_option("--onion-key-rotation", f->onion_key_rotation_s, "Seconds between onion key rotations (0: never)")
      ->capture_default_str();
  sub->add_option("--max-circuits-per-link", f->max_circuits_per_link, "Circuits on one proxy's link")
      ->capture_default_str();
  sub->add_option("--max-circuits-per-relay-link", f->max_circuits_per_relay_link,
                  "Circuits on the one link to or from another relay (all the circuits between the two)")
      ->capture_default_str();
  sub->add_option("--max-streams-per-circuit", f->max_streams_per_circuit)->capture_default_str();
  sub->add_option("--max-links", f->max_links)->capture_default_str();
  sub->add_option("--link-idle-timeout", f->link_idle_timeout_s, "Seconds before a link without circuits closes")
      ->capture_default_str();
  sub->add_option("--circuit-idle-timeout", f->circuit_idle_timeout_s, "Seconds before a silent circuit is destroyed")
      ->capture_default_str();
  add_common_daemon_flags(*sub, f->log_level);
  sub->footer(
      "Example:\n"
      "  thor relay --key relay.key --directory 203.0.113.5:50051 --directory-key directory.pub \\\n"
      "             --listen 0.0.0.0:9001 --advertise 198.51.100.7:9001 --nickname myrelay\n"
      "See docs/relay-operator.md.");

  return [f, sub]() -> int {
    if (auto st = apply_config_file(sub, "relay"); !st) return fail(st.error());
    if (!apply_log_level(f->log_level, "relay")) return 2;
    if (f->key_file.empty()) return fail("--key KEYFILE is required (the relay's identity, from 'thor keygen')");
    if (f->directory.empty()) return fail("--directory HOST:PORT is required");
    if (f->directory_key_file.empty()) return fail("--directory-key PUBFILE is required (the directory's public key)");
    relay::RelayConfig cfg;
    auto key = read_secret_key_file(f->key_file);
    if (!key) return fail(key.error());
    cfg.identity = *key;
    auto dir_key = read_public_key_file(f->directory_key_file);
    if (!dir_key) return fail(dir_key.error());
    cfg.directory_key = *dir_key;
    auto dir = parse_host_port(f->directory);
    if (!dir) return fail("--directory: " + dir.error());
    cfg.directory = *dir;
    auto listen = parse_host_port(f->listen, /*allow_zero=*/true);
    if (!listen) return fail("--listen: " + listen.error());
    if (!is_ipv4_literal(listen->host) && !is_ipv6_literal(listen->host))
      return fail("--listen: '" + listen->host + "' is not a numeric IP address");
    cfg.listen = *listen;
    if (!f->advertise.empty()) {
      auto adv = parse_host_port(f->advertise);
      if (!adv) return fail("--advertise: " + adv.error());
      if (!is_ipv4_literal(adv->host) && !is_ipv6_literal(adv->host))
        return fail("--advertise: '" + adv->host + "' is not a numeric IP address");
      cfg.advertise = *adv;
    }
    auto policy = ExitPolicy::parse(f->exit_policy);
    if (!policy) return fail("--exit-policy: " + policy.error());
    cfg.exit_policy = *policy;
    cfg.nickname = f->nickname.empty() ? "thor" + crypto::fingerprint(key->public_key()).substr(0, 8) : f->nickname;
    if (!valid_nickname(cfg.nickname)) return fail("--nickname: '" + cfg.nickname + "' must be 1-19 letters and digits");
    cfg.bandwidth = f->bandwidth;
    cfg.onion_key_rotation_ms = f->onion_key_rotation_s * 1000;
    cfg.limits.max_circuits_per_link = f->max_circuits_per_link;
    cfg.limits.max_circuits_per_relay_link = f->max_circuits_per_relay_link;
    cfg.limits.max_streams_per_circuit = f->max_streams_per_circuit;
    cfg.limits.max_links = f->max_links;
    cfg.limits.link_idle_timeout_ms = f->link_idle_timeout_s * 1000;
    cfg.limits.circuit_idle_timeout_ms = f->circuit_idle_timeout_s * 1000;

    uv_loop_t loop;
    uv_loop_init(&loop);
    int rc = 0;
    {
      relay::RelayServer server(&loop, std::move(cfg));
      if (auto st = server.start(); !st) {
        rc = fail(st.error());
      } else {
        LOG_NOTICE("advertising " << server.advertised_address().to_string() << "; directory "
                                  << f->directory);
        const bool wildcard = listen->host == "0.0.0.0" || listen->host == "::";
        if (f->advertise.empty() && wildcard && is_private_address(server.advertised_address().host))
          LOG_WARN("no public address found on this machine's interfaces; pass --advertise PUBLIC_IP:PORT "
                   "if this relay should be reachable from the internet");
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
