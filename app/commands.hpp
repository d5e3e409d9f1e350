// Each subcommand of `thor` registers its flags on the CLI11 app and runs from a plain config struct.
// One file per subcommand (cmd_NAME.cpp); thor.cpp only wires them together.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "common/result.hpp"

namespace thor::app {

// A subcommand's runner, called after parsing; returns the process exit code.
using Runner = std::function<int()>;

Runner add_keygen_command(CLI::App& app);
Runner add_directory_command(CLI::App& app);
Runner add_relay_command(CLI::App& app);
Runner add_proxy_command(CLI::App& app);
Runner add_up_command(CLI::App& app);

// Flags every daemon takes: --config FILE (TOML/INI keys named like the long flags) and --log-level.
void add_common_daemon_flags(CLI::App& sub, std::string& log_level);
// CLI11 2.1 reads a --config file only for the top-level app, so each daemon applies its own after
// parsing: every key names a long flag (optionally under a [table] named after the subcommand); the
// command line wins over the file. Errors name the file and the key.
Status apply_config_file(CLI::App* sub, const std::string& table);
// Applies --log-level; false (after printing one line) when the level is unknown.
bool apply_log_level(const std::string& log_level, const char* component);

}  // namespace thor::app
