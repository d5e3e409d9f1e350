// The shared test loop's teardown: prompt when the test closed everything, a failure naming the
// handles when something was left open.
#include <doctest/doctest.h>

#include <chrono>
#include <list>
#include <memory>

#include "common/uv/handle.hpp"
#include "common/uv/tcp.hpp"
#include "tests/support/test_loop.hpp"

using thor::test::TestLoop;
using namespace thor;

TEST_CASE("test loop: teardown after connections, listeners and timers closed takes milliseconds") {
  std::chrono::steady_clock::duration teardown{};
  {
    auto loop = std::make_unique<TestLoop>();
    {
      uv::TcpListener listener(loop->get());
      std::list<std::unique_ptr<uv::TcpConnection>> accepted;
      REQUIRE(listener.listen({"127.0.0.1", 0}, [&](std::unique_ptr<uv::TcpConnection> c) {
        c->start_reading();
        accepted.push_back(std::move(c));
      }));
      uv::TcpConnection client(loop->get());
      bool connected = false;
      client.connect({"127.0.0.1", listener.bound_port()}, [&](Status st) { connected = st.ok(); });
      uv::Timer timer(loop->get());
      timer.start(60'000, 0, [] {});
      REQUIRE(loop->run_until([&] { return connected && accepted.size() == 1; }));
      client.write(Bytes(100'000, 0x61));  // closed with bytes still queued
    }
    const auto start = std::chrono::steady_clock::now();
    loop.reset();
    teardown = std::chrono::steady_clock::now() - start;
  }
  CHECK(teardown < std::chrono::milliseconds(200));
}

TEST_CASE("test loop: run_until returns when the condition holds, or false at the limit") {
  TestLoop loop;
  uv::Timer timer(loop.get());
  bool fired = false;
  timer.start(20, 0, [&] { fired = true; });
  CHECK(loop.run_until([&] { return fired; }, 5000));
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(loop.run_until([] { return false; }, 50));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= std::chrono::milliseconds(45));
  CHECK(waited < std::chrono::milliseconds(1000));
}

TEST_CASE("test loop: open_handles names what is not closed yet") {
  TestLoop loop;
  CHECK(loop.open_handles().empty());
  uv_timer_t idle{};
  uv_timer_init(loop.get(), &idle);
  CHECK(loop.open_handles() == " timer (inactive)");
  uv_timer_start(&idle, [](uv_timer_t*) {}, 60'000, 0);
  CHECK(loop.open_handles() == " timer (active)");
  uv::TcpListener listener(loop.get());
  REQUIRE(listener.listen({"127.0.0.1", 0}, [](std::unique_ptr<uv::TcpConnection>) {}));
  CHECK(loop.open_handles() == " timer (active) tcp (active)");  // in the order they were made
  bool closed = false;
  idle.data = &closed;
  uv_close(reinterpret_cast<uv_handle_t*>(&idle), [](uv_handle_t* h) { *static_cast<bool*>(h->data) = true; });
  CHECK(loop.open_handles() == " tcp (active)");  // closing counts as closed
  CHECK(loop.run_until([&] { return closed; }));
}

// The handle's memory is declared before the loop so that it outlives the loop's teardown. Its
// failure is expected: doctest prints it and counts the test as passed.
TEST_CASE("test loop: a handle nobody closed fails the test" * doctest::should_fail()) {
  uv_timer_t leaked{};
  TestLoop loop(50);  // a short grace: the timer would fire only in a minute
  uv_timer_init(loop.get(), &leaked);
  uv_timer_start(&leaked, [](uv_timer_t*) {}, 60'000, 0);
}
