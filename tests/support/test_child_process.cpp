// The process helper the process-level tests share: exit codes, captured output, and no child left
// behind.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "tests/support/child_process.hpp"

using thor::test::ChildProcess;

namespace {
std::string temp_file(const std::string& name) {
  return "/tmp/thor-child-test-" + std::to_string(getpid()) + "-" + name;
}
}  // namespace

TEST_CASE("child process: exit code, stdout and stderr in files") {
  const std::string out = temp_file("out"), err = temp_file("err");
  {
    ChildProcess c({"sh", "-c", "echo to-out; echo to-err >&2; exit 3"}, out, err);  // sh found on PATH
    REQUIRE(c.started());
    auto st = c.wait(10'000);
    REQUIRE(st.has_value());
    CHECK(ChildProcess::exit_code(st) == 3);
    CHECK_FALSE(c.running());
    CHECK(c.stdout_text() == "to-out\n");
    CHECK(c.stderr_text() == "to-err\n");
  }
  std::remove(out.c_str());
  std::remove(err.c_str());
}

TEST_CASE("child process: stop() ends it with SIGTERM; `between` runs while waiting") {
  ChildProcess c({"sleep", "30"});
  REQUIRE(c.started());
  int turns = 0;
  CHECK_FALSE(c.wait(50, [&] { ++turns; usleep(1000); }).has_value());
  CHECK(turns > 0);
  auto st = c.stop(5000);
  REQUIRE(st.has_value());
  CHECK(ChildProcess::exit_code(st) == 128 + SIGTERM);
}

TEST_CASE("child process: one still running is killed and reaped when the object goes away") {
  pid_t pid = -1;
  {
    ChildProcess c({"sleep", "30"});
    REQUIRE(c.started());
    pid = c.pid();
    CHECK(c.running());
  }
  errno = 0;
  CHECK(::kill(pid, 0) == -1);  // reaped, so not even a zombie is left
  CHECK(errno == ESRCH);
}

TEST_CASE("child process: a program that does not exist is not started") {
  ChildProcess c({"/nonexistent/thor-test-program"});
  CHECK_FALSE(c.started());
  CHECK_FALSE(c.running());
  CHECK(ChildProcess::exit_code(c.wait(100)) == -1);
}
