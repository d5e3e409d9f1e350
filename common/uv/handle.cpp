#include "common/uv/handle.hpp"

namespace thor::uv {

std::string error_text(int status) {
  return std::string(uv_strerror(status)) + " (" + uv_err_name(status) + ")";
}

Timer::Timer(uv_loop_t* loop) {
  uv_timer_init(loop, h_.get());
  h_.mark_initialized();
  h_.get()->data = this;
}

void Timer::start(std::uint64_t timeout_ms, std::uint64_t repeat_ms, std::function<void()> on_fire) {
  on_fire_ = std::move(on_fire);
  uv_timer_start(
      h_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Timer*>(t->data);
        if (self && self->on_fire_) self->on_fire_();
      },
      timeout_ms, repeat_ms);
}

void Timer::stop() {
  if (h_.get()) uv_timer_stop(h_.get());
}

bool Timer::active() const { return h_.get() && uv_is_active(h_.base()); }

void Timer::unref() { uv_unref(h_.base()); }

Signal::Signal(uv_loop_t* loop, int signum, std::function<void()> on_signal) : on_signal_(std::move(on_signal)) {
  uv_signal_init(loop, h_.get());
  h_.mark_initialized();
  h_.get()->data = this;
  uv_signal_start(
      h_.get(),
      [](uv_signal_t* s, int) {
        auto* self = static_cast<Signal*>(s->data);
        if (self && self->on_signal_) self->on_signal_();
      },
      signum);
}

}  // namespace thor::uv
