// Placeholder until the proxy subcommand lands; replaced by its own issue's work.
#include <iostream>

#include "app/commands.hpp"

namespace thor::app {

Runner add_proxy_command(CLI::App& app) {
  app.add_subcommand("proxy", "(not built yet)");
  return [] {
    std::cerr << "thor proxy: not built yet\n";
    return 1;
  };
}

}  // namespace thor::app
