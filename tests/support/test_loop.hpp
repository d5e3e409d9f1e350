// A libuv loop for one test: run it until a condition holds (with a time limit), and tear it down
// afterwards. Declare it first in a test so that it outlives the objects using it.
//
// Teardown. By the time the loop goes, the test's objects are gone and have closed their handles;
// the close callbacks need one more turn of the loop, so teardown takes about a millisecond. A handle
// that is still open after a grace period (a second), or that nothing can close any more, was not
// closed by whoever owned it: a leak, or a connection left lingering with bytes nobody will read (a
// closed link keeps writing what it queued for up to 5 s, see common/link/channel.cpp). That fails
// the test, naming the handles, and they are closed so that the loop can be. Requests still in flight
// (a name lookup whose caller gave up) are waited for: they cannot be cancelled and end by themselves.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "common/uv/handle.hpp"

namespace thor::test {

// Runs the loop until done() is true or limit_ms pass; returns done().
inline bool run_until(uv_loop_t* loop, const std::function<bool()>& done, std::uint64_t limit_ms = 10'000) {
  uv::Timer tick(loop);
  tick.start(2, 2, [] {});  // wakes the loop so that the limit (and a condition on time) is checked
  uv_update_time(loop);
  const std::uint64_t start = uv_now(loop);
  while (!done()) {
    uv_update_time(loop);
    if (uv_now(loop) - start > limit_ms) return done();
    uv_run(loop, UV_RUN_ONCE);
  }
  return true;
}

// Runs the loop for about ms milliseconds.
inline void run_for(uv_loop_t* loop, std::uint64_t ms) {
  uv_update_time(loop);
  const std::uint64_t start = uv_now(loop);
  run_until(loop, [&] { return uv_now(loop) - start >= ms; }, ms + 1000);
}

class TestLoop {
 public:
  explicit TestLoop(std::uint64_t close_grace_ms = 1000) : close_grace_ms_(close_grace_ms) { uv_loop_init(&loop_); }
  ~TestLoop() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(close_grace_ms_);
    // Once the loop is not alive no callback can close what is left, so there is no point waiting.
    while (!open_handles().empty() && uv_loop_alive(&loop_) && std::chrono::steady_clock::now() < deadline) {
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (!open_handles().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::string left = open_handles();
    if (!left.empty()) {
      FAIL_CHECK("libuv handles still open after the test's objects were destroyed (a leak, or a connection"
                 " lingering with unread bytes):" << left);
      uv_walk(
          &loop_, [](uv_handle_t* h, void*) {
            if (!uv_is_closing(h)) uv_close(h, nullptr);
          },
          nullptr);
    }
    uv_run(&loop_, UV_RUN_DEFAULT);  // close callbacks, and requests still in flight
    const int rc = uv_loop_close(&loop_);
    CHECK_MESSAGE(rc == 0, "uv_loop_close: ", uv_strerror(rc));
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  uv_loop_t* get() { return &loop_; }

  bool run_until(const std::function<bool()>& done, std::uint64_t limit_ms = 10'000) {
    return test::run_until(&loop_, done, limit_ms);
  }
  void run_for(std::uint64_t ms) { test::run_for(&loop_, ms); }

  // The handles not closed yet, as " tcp (active, 4096 bytes unsent) timer (active)"; empty when none.
  std::string open_handles() {
    std::string out;
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void* arg) {
          if (uv_is_closing(h)) return;
          auto& s = *static_cast<std::string*>(arg);
          s += " ";
          const uv_handle_type type = uv_handle_get_type(h);
          s += uv_handle_type_name(type);
          s += uv_is_active(h) ? " (active" : " (inactive";
          if (type == UV_TCP || type == UV_NAMED_PIPE) {
            const std::size_t unsent = uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(h));
            if (unsent > 0) s += ", " + std::to_string(unsent) + " bytes unsent";
          }
          s += ")";
        },
        &out);
    return out;
  }

 private:
  std::uint64_t close_grace_ms_;
  uv_loop_t loop_{};
};

}  // namespace thor::test
