// Placeholder until the relay subcommand lands; replaced by its own issue's work.
#include <iostream>

#include "app/commands.hpp"

namespace thor::app {

Runner add_relay_command(CLI::App& app) {
  app.add_subcommand("relay", "(not built yet)");
  return [] {
    std::cerr << "thor relay: not built yet\n";
    return 1;
  };
}

}  // namespace thor::app
