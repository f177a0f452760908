// weft: the trace recorder: bounded per-thread event buffers, written as Chrome Trace Event
// JSON when `weft::run` returns (see docs/seeing-inside.md for the format and its use).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <weft/task_info.hpp>

namespace weft::detail {

/// One recorded event. Names are static strings ("run", "lock", "park", "steal", ...).
struct trace_event {
  std::int64_t start_ns = 0;  ///< steady clock
  std::int64_t dur_ns = -1;   ///< -1: an instant event
  std::uint64_t task = 0;     ///< the task of a `run` span (0: none)
  const char* name = "";
  std::int64_t arg = 0;  ///< an instant's argument (an fd, a count), written as args.value
};

/// The events of one executor thread. Its capacity is fixed when the run starts: a full buffer
/// counts what it drops instead of growing, so tracing never allocates on the hot path.
/// Thread-safety: written by its thread only, read by the writer once every thread stopped.
class trace_buffer {
 public:
  explicit trace_buffer(std::size_t capacity) { events_.reserve(capacity); }

  /// Records a span [start, end).
  void span(const char* name, std::int64_t start, std::int64_t end, std::uint64_t task) noexcept {
    push(trace_event{start, end - start, task, name, 0});
  }
  /// Records an instant event at `at`.
  void instant(const char* name, std::int64_t at, std::int64_t arg = 0) noexcept {
    push(trace_event{at, -1, 0, name, arg});
  }
  /// Events that did not fit.
  std::uint64_t dropped() const noexcept { return dropped_; }
  /// The events recorded, in the order they were recorded.
  const std::vector<trace_event>& events() const noexcept { return events_; }

  /// single-lock: when this thread took the global lock (-1: it does not hold it).
  std::int64_t lock_start = -1;

 private:
  void push(const trace_event& e) noexcept {
    if (events_.size() == events_.capacity()) [[unlikely]] {
      ++dropped_;
      return;
    }
    events_.push_back(e);  // within the reserved capacity: never allocates
  }
  std::vector<trace_event> events_;
  std::uint64_t dropped_ = 0;
};

/// The trace buffer of the calling thread while it runs an executor that traces; null
/// otherwise. The hot paths test this pointer and nothing else. Without tracing built in
/// (WEFT_TRACING=0) it is a null constant, and those tests fold away.
#if WEFT_TRACING
inline thread_local trace_buffer* tls_trace = nullptr;
#else
inline constexpr trace_buffer* tls_trace = nullptr;
#endif

/// The trace clock: steady, in nanoseconds.
inline std::int64_t trace_now() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Records one task resumption (`resume()`) as a `run` span on `b`, attributed to the first
/// task that ran in it.
template <class Resume>
void traced_resume(trace_buffer& b, Resume&& resume) {
  const std::int64_t start = trace_now();
  tls_span_task = 0;
  tls_last_task_id = 0;
  resume();
  // The first task that ran; a coroutine that is not a task's resumes none (then the last
  // task that left the thread, if any).
  const std::uint64_t task = tls_span_task != 0 ? tls_span_task : tls_last_task_id;
  tls_span_task = ~std::uint64_t{0};
  b.span("run", start, trace_now(), task);
}

/// Records an instant event on the calling thread's buffer, if it traces.
inline void trace_instant(const char* name, std::int64_t arg = 0) noexcept {
  if (trace_buffer* b = tls_trace) [[unlikely]]
    b->instant(name, trace_now(), arg);
}

/// The trace of one `weft::run`: a buffer per executor thread, the names of the tasks spawned
/// while it records, and the file it is written to.
/// Thread-safety: `buffer(i)` belongs to thread i; `note_name` from any thread; `write` once
/// every executor thread has stopped.
class trace_session {
 public:
  /// Buffers of `capacity` events for `threads` threads named "<label> <i>"; `mode` goes to
  /// otherData. Throws std::bad_alloc.
  trace_session(std::string path, std::size_t capacity, std::string_view mode,
                std::string_view label, unsigned threads);

  /// Thread `index`'s buffer (null past the last thread).
  trace_buffer* buffer(unsigned index) noexcept {
    return index < buffers_.size() ? buffers_[index].get() : nullptr;
  }
  /// Remembers a task's name for the `run` spans (at most as many names as one buffer holds
  /// events; further names are counted as dropped).
  void note_name(std::uint64_t id, std::string_view name) noexcept;
  /// Events dropped so far, over every buffer (and names that did not fit).
  std::uint64_t dropped() const noexcept;
  /// Writes the JSON file; reports dropped events, and a file that cannot be written, on
  /// stderr (a trace must not make the program fail). Returns false when nothing was written.
  bool write() noexcept;
  /// The file it writes.
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  std::string mode_;
  std::string label_;
  std::size_t capacity_;
  std::int64_t origin_ns_;
  std::vector<std::unique_ptr<trace_buffer>> buffers_;
  mutable std::mutex names_mutex_;
  std::unordered_map<std::uint64_t, std::string> names_;
  std::uint64_t names_dropped_ = 0;  // guarded by names_mutex_
};

/// Binds thread `index`'s buffer of `session` (if any) to the calling thread for a scope.
class trace_thread_scope {
 public:
#if WEFT_TRACING
  trace_thread_scope(trace_session* session, unsigned index) noexcept : previous_(tls_trace) {
    tls_trace = session != nullptr ? session->buffer(index) : nullptr;
  }
  ~trace_thread_scope() {
    tls_trace = previous_;
  }
#else
  trace_thread_scope(trace_session*, unsigned) noexcept : previous_(nullptr) {}
#endif
  trace_thread_scope(const trace_thread_scope&) = delete;
  trace_thread_scope& operator=(const trace_thread_scope&) = delete;

 private:
  trace_buffer* previous_;
};

/// The default capacity of a thread's buffer (events): about 40 MiB per thread at most.
inline constexpr std::size_t default_trace_events = std::size_t{1} << 20;

}  // namespace weft::detail
