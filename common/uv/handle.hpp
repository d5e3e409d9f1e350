// RAII ownership of libuv handles. A handle's memory is freed only in its close callback, never
// before (uvw and Node's HandleWrap follow the same rule). Owners are move-only.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>

namespace thor::uv {

std::string error_text(int uv_status);  // "address already in use (EADDRINUSE)"

// Owns one heap-allocated uv handle of type T. Destroying the owner closes the handle; the memory
// goes away in the close callback. handle->data is reserved for the owning object.
template <class T>
class Handle {
 public:
  Handle() : h_(new T{}) {}
  ~Handle() { close(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : h_(o.h_), initialized_(o.initialized_) {
    o.h_ = nullptr;
    o.initialized_ = false;
  }
  T* get() const { return h_; }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(h_); }
  // Call after a successful uv_*_init: from then on the handle must be closed, not deleted.
  void mark_initialized() { initialized_ = true; }
  bool initialized() const { return initialized_; }
  void close() {
    if (!h_) return;
    T* h = h_;
    h_ = nullptr;
    if (!initialized_) {
      delete h;
      return;
    }
    initialized_ = false;
    auto* base = reinterpret_cast<uv_handle_t*>(h);
    base->data = nullptr;
    if (uv_is_closing(base)) return;  // someone else closes it; leaks nothing since we own h only
    uv_close(base, [](uv_handle_t* p) { delete reinterpret_cast<T*>(p); });
  }

 private:
  T* h_;
  bool initialized_ = false;
};

// A repeating or one-shot timer.
class Timer {
 public:
  explicit Timer(uv_loop_t* loop);
  void start(std::uint64_t timeout_ms, std::uint64_t repeat_ms, std::function<void()> on_fire);
  void stop();
  bool active() const;
  // Lets the loop exit while only this timer is pending.
  void unref();

 private:
  Handle<uv_timer_t> h_;
  std::function<void()> on_fire_;
};

// Runs on_signal on the loop when the process receives signum.
class Signal {
 public:
  Signal(uv_loop_t* loop, int signum, std::function<void()> on_signal);

 private:
  Handle<uv_signal_t> h_;
  std::function<void()> on_signal_;
};

}  // namespace thor::uv
