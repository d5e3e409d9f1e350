#include "common/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace thor::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::string g_component = "thor";
std::mutex g_mutex;

const char* name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::notice: return "notice";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level l) { g_level = static_cast<int>(l); }
Level level() { return static_cast<Level>(g_level.load()); }

bool parse_level(std::string_view text, Level& out) {
  for (Level l : {Level::debug, Level::info, Level::notice, Level::warn, Level::error}) {
    if (text == name(l)) {
      out = l;
      return true;
    }
  }
  if (text == "warning") {
    out = Level::warn;
    return true;
  }
  return false;
}

void set_component(std::string component) {
  std::lock_guard lock(g_mutex);
  g_component = std::move(component);
}

void write(Level l, std::string_view message) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  std::lock_guard lock(g_mutex);
  std::fprintf(stderr, "%s.%03lld [%s] %s: %.*s\n", stamp, static_cast<long long>(ms), name(l),
               g_component.c_str(), static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
}

std::string redact(std::string_view address) {
  if (enabled(Level::debug)) return std::string(address);
  return "[scrubbed]";
}

}  // namespace thor::log
