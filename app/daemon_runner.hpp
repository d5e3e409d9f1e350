// Runs a daemon on its own libuv loop until SIGINT or SIGTERM, then asks it to stop and lets the
// loop drain. Shared by every `thor` subcommand that runs a daemon.
#pragma once

#include <uv.h>

#include <functional>

namespace thor::app {

// stop: asked once on the first signal; the daemon closes its handles so uv_run returns.
// A second signal exits at once.
int run_until_signal(uv_loop_t* loop, std::function<void()> stop);

}  // namespace thor::app
