// The `thor` command: one executable, one subcommand per role. Parsing only; each role's logic lives
// in its library (directory/, relay/, proxy/), which tests start in-process.
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

#include "app/commands.hpp"
#include "common/crypto/keys.hpp"
#include "common/log.hpp"

namespace thor::app {

void add_common_daemon_flags(CLI::App& sub, std::string& log_level) {
  sub.set_config("--config", "", "Read options from a TOML/INI file (keys named like the long flags)");
  sub.add_option("--log-level", log_level, "debug, info, notice, warn or error")->capture_default_str();
}

Status apply_config_file(CLI::App* sub, const std::string& table) {
  CLI::Option* cfg = sub->get_config_ptr();
  if (!cfg || cfg->count() == 0) return {};
  const std::string path = cfg->as<std::string>();
  if (path.empty()) return {};
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const std::exception& e) {
    return Error{"--config: cannot read " + path + ": " + e.what()};
  }
  for (const auto& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // table markers
    if (!(item.parents.empty() || (item.parents.size() == 1 && item.parents[0] == table)))
      return Error{path + ": unknown key '" + item.fullname() + "'"};
    if (item.name == "config") return Error{path + ": a config file cannot name another config file"};
    CLI::Option* opt = sub->get_option_no_throw("--" + item.name);
    if (!opt) return Error{path + ": unknown key '" + item.fullname() + "' (keys are the long flags, e.g. listen)"};
    if (opt->count() > 0) continue;
    try {
      opt->add_result(item.inputs);
      opt->run_callback();
    } catch (const std::exception& e) {
      return Error{path + ": " + item.name + ": " + e.what()};
    }
  }
  return {};
}

bool apply_log_level(const std::string& text, const char* component) {
  log::set_component(component);
  log::Level level;
  if (!log::parse_level(text, level)) {
    std::cerr << "thor: unknown --log-level '" << text << "' (use debug, info, notice, warn or error)\n";
    return false;
  }
  log::set_level(level);
  return true;
}

}  // namespace thor::app

int main(int argc, char** argv) {
  using namespace thor::app;
  if (!thor::crypto::init()) {
    std::cerr << "thor: libsodium failed to initialise\n";
    return 1;
  }
  CLI::App app{"Thor: an onion-routing network (directory, relays, SOCKS5 proxy)", "thor"};
  app.set_version_flag("--version", std::string("thor ") + THOR_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  Runner keygen = add_keygen_command(app);
  Runner directory = add_directory_command(app);
  Runner relay = add_relay_command(app);
  Runner proxy = add_proxy_command(app);
  Runner up = add_up_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One clear line, then a hint; CLI11's default prints the same plus the whole help.
    std::cerr << "thor: " << e.what() << "\nRun 'thor --help' or 'thor SUBCOMMAND --help' for usage.\n";
    return 2;
  }

  for (auto* sub : app.get_subcommands()) {
    const std::string& name = sub->get_name();
    if (name == "keygen") return keygen();
    if (name == "directory") return directory();
    if (name == "relay") return relay();
    if (name == "proxy") return proxy();
    if (name == "up") return up();
  }
  return 2;
}
