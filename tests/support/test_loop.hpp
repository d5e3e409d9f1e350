// A libuv loop for one test: run it until a condition holds (with a time limit), and tear it down
// cleanly afterwards. Declare it first in a test so that it outlives the objects using it.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <thread>

#include "common/uv/handle.hpp"

namespace thor::test {

class TestLoop {
 public:
  TestLoop() { uv_loop_init(&loop_); }
  ~TestLoop() {
    // Let closing handles and lingering connections finish, then close what is left.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
    while (uv_loop_alive(&loop_) && std::chrono::steady_clock::now() < deadline) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    uv_walk(
        &loop_, [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }

  // Runs the loop until done() is true or limit_ms pass; returns done().
  bool run_until(const std::function<bool()>& done, std::uint64_t limit_ms = 10000) {
    uv::Timer tick(&loop_);
    tick.start(5, 5, [] {});  // wakes the loop so that the limit is checked
    uv_update_time(&loop_);
    const std::uint64_t start = uv_now(&loop_);
    while (!done()) {
      uv_update_time(&loop_);
      if (uv_now(&loop_) - start > limit_ms) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }
  // Runs the loop for about ms milliseconds.
  void run_for(std::uint64_t ms) {
    uv_update_time(&loop_);
    const std::uint64_t start = uv_now(&loop_);
    run_until([&] { return uv_now(&loop_) - start >= ms; }, ms + 1000);
  }

 private:
  uv_loop_t loop_{};
};

}  // namespace thor::test
