// Logging to stderr with levels: one line per event, "time [level] component: message".
// Client and destination addresses are never logged at the default level (they are what Thor hides);
// log them only at debug, through log::redact() when unsure.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace thor::log {

enum class Level { debug = 0, info = 1, notice = 2, warn = 3, error = 4 };

void set_level(Level level);
Level level();
inline bool enabled(Level l) { return static_cast<int>(l) >= static_cast<int>(level()); }
// Parses "debug", "info", "notice", "warn", "error"; false on anything else.
bool parse_level(std::string_view text, Level& out);
// The component name printed on every line of this process ("directory", "relay", "proxy", ...).
void set_component(std::string name);
void write(Level level, std::string_view message);
// Addresses at the default level are shown as "[scrubbed]" (Tor's SafeLogging); at debug, as they are.
std::string redact(std::string_view address);

}  // namespace thor::log

#define THOR_LOG(lvl, expr)                                 \
  do {                                                      \
    if (::thor::log::enabled(lvl)) {                        \
      std::ostringstream thor_log_os_;                      \
      thor_log_os_ << expr;                                 \
      ::thor::log::write((lvl), thor_log_os_.str());        \
    }                                                       \
  } while (0)
#define LOG_DEBUG(expr) THOR_LOG(::thor::log::Level::debug, expr)
#define LOG_INFO(expr) THOR_LOG(::thor::log::Level::info, expr)
#define LOG_NOTICE(expr) THOR_LOG(::thor::log::Level::notice, expr)
#define LOG_WARN(expr) THOR_LOG(::thor::log::Level::warn, expr)
#define LOG_ERROR(expr) THOR_LOG(::thor::log::Level::error, expr)
