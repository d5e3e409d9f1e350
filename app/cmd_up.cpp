// Placeholder until the up subcommand lands; replaced by its own issue's work.
#include <iostream>

#include "app/commands.hpp"

namespace thor::app {

Runner add_up_command(CLI::App& app) {
  app.add_subcommand("up", "(not built yet)");
  return [] {
    std::cerr << "thor up: not built yet\n";
    return 1;
  };
}

}  // namespace thor::app
