// Placeholder until the directory subcommand lands; replaced by its own issue's work.
#include <iostream>

#include "app/commands.hpp"

namespace thor::app {

Runner add_directory_command(CLI::App& app) {
  app.add_subcommand("directory", "(not built yet)");
  return [] {
    std::cerr << "thor directory: not built yet\n";
    return 1;
  };
}

}  // namespace thor::app
