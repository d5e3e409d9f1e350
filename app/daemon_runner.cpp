#include "app/daemon_runner.hpp"

#include <csignal>
#include <cstdlib>

#include "common/log.hpp"
#include "common/uv/handle.hpp"

namespace thor::app {

int run_until_signal(uv_loop_t* loop, std::function<void()> stop) {
  std::signal(SIGPIPE, SIG_IGN);
  int signals_seen = 0;
  auto on_signal = [&] {
    if (++signals_seen > 1) {
      LOG_WARN("second signal: exiting now");
      std::_Exit(1);
    }
    LOG_NOTICE("signal received: shutting down");
    stop();
  };
  {
    auto sigint = std::make_unique<uv::Signal>(loop, SIGINT, on_signal);
    auto sigterm = std::make_unique<uv::Signal>(loop, SIGTERM, on_signal);
    // The signal handles keep the loop alive; unref them so the loop ends when the daemon is done.
    uv_walk(loop, [](uv_handle_t* h, void*) { if (h->type == UV_SIGNAL) uv_unref(h); }, nullptr);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  // Let the close callbacks of the signal handles run.
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}

}  // namespace thor::app
