#include <weft/trace.hpp>

#include <liburing.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include <weft/task.hpp>

namespace weft::detail {

std::uint64_t refill_task_ids() noexcept {
  constexpr std::uint64_t block = 1024;
  static std::atomic<std::uint64_t> next{1};  // 0 means "no task"
  const std::uint64_t first = next.fetch_add(block, std::memory_order_relaxed);
  tls_next_id = first + 1;
  tls_id_end = first + block;
  return first;
}

std::int64_t coarse_now_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

const char* io_op_name(unsigned opcode) noexcept {
  switch (opcode) {
    case IORING_OP_NOP: return "nop";
    case IORING_OP_READV: return "readv";
    case IORING_OP_WRITEV: return "writev";
    case IORING_OP_FSYNC: return "fsync";
    case IORING_OP_POLL_ADD: return "poll";
    case IORING_OP_SENDMSG: return "sendmsg";
    case IORING_OP_RECVMSG: return "recvmsg";
    case IORING_OP_TIMEOUT: return "timeout";
    case IORING_OP_ACCEPT: return "accept";
    case IORING_OP_CONNECT: return "connect";
    case IORING_OP_OPENAT: return "openat";
    case IORING_OP_CLOSE: return "close";
    case IORING_OP_STATX: return "statx";
    case IORING_OP_READ: return "read";
    case IORING_OP_WRITE: return "write";
    case IORING_OP_SEND: return "send";
    case IORING_OP_RECV: return "recv";
    case IORING_OP_SHUTDOWN: return "shutdown";
    case IORING_OP_SPLICE: return "splice";
    default: return "io";
  }
}

void describe_current_wait(const char* what) noexcept {
  if (promise_base* t = tls_current_task) t->describe_wait(what, wait_arg::none, 0);
}

void note_io_submit(unsigned opcode, int fd) noexcept {
  const char* what = io_op_name(opcode);
  if (promise_base* t = tls_current_task) t->describe_wait(what, wait_arg::fd, fd);
  if (trace_buffer* b = tls_trace) b->instant(what, trace_now(), fd);
}

// ---- trace_session ---------------------------------------------------------------------------

trace_session::trace_session(std::string path, std::size_t capacity, std::string_view mode,
                             std::string_view label, unsigned threads)
    : path_(std::move(path)),
      mode_(mode),
      label_(label),
      capacity_(capacity),
      origin_ns_(trace_now()) {
  buffers_.reserve(threads);
  for (unsigned i = 0; i < threads; ++i)
    buffers_.push_back(std::make_unique<trace_buffer>(capacity));
}

void trace_session::note_name(std::uint64_t id, std::string_view name) noexcept {
  std::lock_guard lock(names_mutex_);
  if (names_.size() >= capacity_) {
    ++names_dropped_;
    return;
  }
  try {
    names_.emplace(id, std::string(name));
  } catch (...) {
    ++names_dropped_;
  }
}

std::uint64_t trace_session::dropped() const noexcept {
  std::uint64_t n = 0;
  for (const auto& b : buffers_) n += b->dropped();
  std::lock_guard lock(names_mutex_);
  return n + names_dropped_;
}

namespace {

// A JSON string body: quotes, backslashes and control characters escaped.
void write_escaped(std::FILE* f, std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      std::fputc('\\', f);
      std::fputc(c, f);
    } else if (u < 0x20) {
      std::fprintf(f, "\\u%04x", u);
    } else {
      std::fputc(c, f);
    }
  }
}

double micros(std::int64_t ns) {
  return static_cast<double>(ns) / 1000.0;
}

}  // namespace

bool trace_session::write() noexcept {
  std::FILE* f = std::fopen(path_.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "weft: cannot write the trace to %s: %s\n", path_.c_str(),
                 std::strerror(errno));
    return false;
  }
  const int pid = static_cast<int>(::getpid());
  std::fputs("{\"traceEvents\":[\n", f);
  bool first = true;
  auto separator = [&] {
    if (!first) std::fputs(",\n", f);
    first = false;
  };
  for (unsigned i = 0; i < buffers_.size(); ++i) {
    separator();
    std::fprintf(f,
                 "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%u,"
                 "\"args\":{\"name\":\"",
                 pid, i);
    write_escaped(f, label_);
    std::fprintf(f, " %u\"}}", i);
  }
  std::lock_guard lock(names_mutex_);
  for (unsigned i = 0; i < buffers_.size(); ++i) {
    for (const trace_event& e : buffers_[i]->events()) {
      separator();
      const bool instant = e.dur_ns < 0;
      const bool run = std::strcmp(e.name, "run") == 0;
      const char* cat = instant ? "event" : run ? "task" : e.name;
      std::fprintf(f, "{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"%s\",\"ts\":%.3f,", e.name, cat,
                   instant ? "i" : "X", micros(e.start_ns - origin_ns_));
      if (!instant) std::fprintf(f, "\"dur\":%.3f,", micros(e.dur_ns));
      std::fprintf(f, "\"pid\":%d,\"tid\":%u,", pid, i);
      if (instant) {
        std::fprintf(f, "\"s\":\"t\",\"args\":{\"value\":%" PRId64 "}}", e.arg);
      } else if (run) {
        std::fprintf(f, "\"args\":{\"task\":%" PRIu64 ",\"name\":\"", e.task);
        if (auto it = names_.find(e.task); it != names_.end()) write_escaped(f, it->second);
        std::fputs("\"}}", f);
      } else {
        std::fputs("\"args\":{}}", f);
      }
    }
  }
  std::uint64_t total = names_dropped_;
  std::fputs("\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"mode\":\"", f);
  write_escaped(f, mode_);
  std::fprintf(f, "\",\"workers\":%zu,\"events_per_thread\":%zu,\"dropped_per_thread\":[",
               buffers_.size(), capacity_);
  for (unsigned i = 0; i < buffers_.size(); ++i) {
    std::fprintf(f, "%s%" PRIu64, i == 0 ? "" : ",", buffers_[i]->dropped());
    total += buffers_[i]->dropped();
  }
  std::fprintf(f, "],\"dropped_names\":%" PRIu64 ",\"dropped_events\":%" PRIu64 "}}\n",
               names_dropped_, total);
  const bool ok = std::fflush(f) == 0 && !std::ferror(f);
  std::fclose(f);
  if (!ok) {
    std::fprintf(stderr, "weft: writing the trace to %s failed\n", path_.c_str());
    return false;
  }
  if (total != 0) {
    std::fprintf(stderr, "weft: trace %s: %" PRIu64 " events dropped (per thread:", path_.c_str(),
                 total);
    for (const auto& b : buffers_) std::fprintf(stderr, " %" PRIu64, b->dropped());
    std::fprintf(stderr, "; names: %" PRIu64 "); raise WEFT_TRACE_EVENTS (now %zu)\n",
                 names_dropped_, capacity_);
  }
  return true;
}

}  // namespace weft::detail
