// Each subcommand of `thor` registers its flags on the CLI11 app and runs from a plain config struct.
// One file per subcommand (cmd_NAME.cpp); thor.cpp only wires them together.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

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
// Applies --log-level; false (after printing one line) when the level is unknown.
bool apply_log_level(const std::string& log_level, const char* component);

}  // namespace thor::app
