// A child process for process-level tests: started with posix_spawnp (stdin from /dev/null, stdout to
// a file or /dev/null, stderr to a file or the test's own), waited for with a time limit, and killed
// and reaped when the object goes away, so that no test leaves a process behind, not even one that
// fails half-way. While waiting, a test can keep its loop turning (`between`), so that servers
// in the test process answer the child.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace thor::test {

// The whole content of a file; "" when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ChildProcess {
 public:
  // argv[0] is looked up on PATH unless it contains a '/'. stdout_path "": /dev/null; stderr_path "":
  // inherited. Files are created or truncated.
  explicit ChildProcess(const std::vector<std::string>& argv, const std::string& stdout_path = "",
                        const std::string& stderr_path = "")
      : stdout_path_(stdout_path), stderr_path_(stderr_path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, stdout_path.empty() ? "/dev/null" : stdout_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!stderr_path.empty())
      posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (argv.empty() || posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // False when the program could not be started (not found, not executable).
  bool started() const { return pid_ > 0 || status_.has_value(); }
  bool running() {
    poll();
    return pid_ > 0;
  }
  pid_t pid() const { return pid_; }
  // The wait status (WIFEXITED, WEXITSTATUS, ...) once the child has exited and been reaped.
  const std::optional<int>& status() const { return status_; }
  // What it wrote so far to the files given for stdout and stderr.
  std::string stdout_text() const { return stdout_path_.empty() ? "" : read_file(stdout_path_); }
  std::string stderr_text() const { return stderr_path_.empty() ? "" : read_file(stderr_path_); }

  // Waits up to limit_ms for the child to exit; returns its wait status, or nullopt while it runs.
  // `between` runs between checks (default: a 10 ms sleep).
  std::optional<int> wait(std::uint64_t limit_ms, const std::function<void()>& between = {}) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
    while (poll()) {
      if (std::chrono::steady_clock::now() >= end) return std::nullopt;
      if (between) between();
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return status_;
  }
  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // SIGTERM, then SIGKILL if it has not exited after limit_ms; returns the wait status.
  std::optional<int> stop(std::uint64_t limit_ms = 5000, const std::function<void()>& between = {}) {
    signal(SIGTERM);
    if (auto st = wait(limit_ms, between)) return st;
    signal(SIGKILL);
    return wait(limit_ms, between);
  }

  // The exit code, or 128 + the signal that ended it (as a shell reports it); -1 while it runs.
  static int exit_code(const std::optional<int>& status) {
    if (!status) return -1;
    if (WIFEXITED(*status)) return WEXITSTATUS(*status);
    if (WIFSIGNALED(*status)) return 128 + WTERMSIG(*status);
    return -1;
  }

 private:
  // Reaps the child if it has exited; true while it runs.
  bool poll() {
    if (pid_ <= 0) return false;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = st;
      pid_ = -1;
      return false;
    }
    return true;
  }

  std::string stdout_path_, stderr_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

}  // namespace thor::test
