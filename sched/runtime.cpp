#include <weft/sched/runtime.hpp>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace weft {
namespace detail {

namespace {

// The runtimes running now, by executor (runtime_handle::current looks its thread's up).
// A handful at most: a linear search under a lock is plenty.
std::mutex registry_mutex;
std::vector<std::pair<executor*, std::weak_ptr<runtime_state>>>& running_runtimes() {
  static std::vector<std::pair<executor*, std::weak_ptr<runtime_state>>> r;
  return r;
}

}  // namespace

void register_runtime(executor& ex, std::shared_ptr<runtime_state> state) {
  std::lock_guard lock(registry_mutex);
  running_runtimes().emplace_back(&ex, std::move(state));
}

void unregister_runtime(executor& ex) noexcept {
  std::lock_guard lock(registry_mutex);
  std::erase_if(running_runtimes(), [&](const auto& e) { return e.first == &ex; });
}

runtime_state::settings trace_settings_from_env(runtime_state::settings s) {
  if (const char* path = std::getenv("WEFT_TRACE"); path != nullptr && *path != '\0') {
    s.trace_path = path;
  }
  if (const char* n = std::getenv("WEFT_TRACE_EVENTS"); n != nullptr && *n != '\0') {
    std::size_t events = 0;
    const char* end = n + std::strlen(n);
    auto [p, ec] = std::from_chars(n, end, events);
    if (ec == std::errc() && p == end && events > 0) {
      s.trace_events = events;
    } else {
      std::fprintf(stderr, "weft: ignoring WEFT_TRACE_EVENTS=%s (wants a positive count)\n", n);
    }
  }
  return s;
}

void runtime_state::attach(executor& ex, weft::mode m, std::string_view mode_name, unsigned threads,
                           std::string_view label) {
  if (!settings_.trace_path.empty() && WEFT_TRACING == 0) {
    std::fprintf(stderr, "weft: no trace written to %s: weft was built with -Dtracing=false\n",
                 settings_.trace_path.c_str());
  } else if (!settings_.trace_path.empty()) {
    trace_ = std::make_unique<trace_session>(settings_.trace_path, settings_.trace_events,
                                             mode_name, label, threads);
  }
  if (trace_ || settings_.on_spawn || settings_.on_exit) ex.set_observer(this);
  std::lock_guard lock(mutex_);
  executor_ = &ex;
  accepting_ = true;
  mode_ = m;
  threads_ = threads;
}

void runtime_state::main_ended() noexcept {
  std::lock_guard lock(mutex_);
  accepting_ = false;
}

void runtime_state::detach() noexcept {
  executor* ex = nullptr;
  {
    std::lock_guard lock(mutex_);
    ex = std::exchange(executor_, nullptr);
    accepting_ = false;
  }
  if (ex != nullptr) ex->set_observer(nullptr);
  if (trace_) trace_->write();
}

void runtime_state::abandon() noexcept {
  std::lock_guard lock(mutex_);
  executor_ = nullptr;
  accepting_ = false;
  if (trace_) std::fputs("weft: the trace is not written: the shutdown timed out\n", stderr);
}

runtime_metrics runtime_state::metrics() const {
  std::lock_guard lock(mutex_);
  if (executor_ == nullptr) throw_error(errc::no_runtime, "weft::runtime_handle: the run is over");
  runtime_metrics m;
  m.mode = mode_;
  m.workers = threads_;
  m.per_worker.resize(threads_);
  executor_->collect_metrics(m);
  m.tasks_finished = m.tasks_spawned >= m.tasks_alive ? m.tasks_spawned - m.tasks_alive : 0;
  return m;
}

std::string runtime_state::dump() const {
  std::lock_guard lock(mutex_);
  if (executor_ == nullptr) throw_error(errc::no_runtime, "weft::runtime_handle: the run is over");
  return task_dump(*executor_);
}

void runtime_state::task_spawned(promise_base& task) noexcept {
  if (trace_) {
    if (!task.name().empty()) trace_->note_name(task.id(), task.name());
    trace_instant("spawn", static_cast<std::int64_t>(task.id()));
  }
  if (settings_.on_spawn) settings_.on_spawn(task_info{task.id(), task.name()});
}

void runtime_state::task_ended(promise_base& task) noexcept {
  if (trace_) trace_instant("end", static_cast<std::int64_t>(task.id()));
  if (settings_.on_exit) settings_.on_exit(task_info{task.id(), task.name()});
}

}  // namespace detail

runtime_handle runtime_handle::current() {
  executor* ex = executor::current();
  if (ex == nullptr) return {};
  std::lock_guard lock(detail::registry_mutex);
  for (const auto& [e, state] : detail::running_runtimes()) {
    if (e == ex) return runtime_handle(state.lock());
  }
  return {};
}

runtime_metrics runtime_handle::metrics() const {
  if (!state_) throw_error(errc::no_runtime, "weft::runtime_handle::metrics on an empty handle");
  return state_->metrics();
}

std::string runtime_handle::dump() const {
  if (!state_) throw_error(errc::no_runtime, "weft::runtime_handle::dump on an empty handle");
  return state_->dump();
}

}  // namespace weft
