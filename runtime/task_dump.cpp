#include <weft/this_task.hpp>

#include <unistd.h>

#include <cinttypes>
#include <climits>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

namespace weft {

namespace {

// "... [with T = weft::io::basic_operation<...>]" -> "weft::io::basic_operation<...>": what
// detail::type_label gives for an awaiter that does not describe its wait.
std::string_view label_text(const char* what) {
  std::string_view s(what);
  const auto with = s.find("[with T = ");
  if (with == std::string_view::npos) return s;
  s.remove_prefix(with + 10);
  if (!s.empty() && s.back() == ']') s.remove_suffix(1);
  return s;
}

// What an fd is (socket:[123], pipe:[45], anon_inode:[pidfd], a path), from /proc.
std::string fd_target(std::int64_t fd) {
  if (fd < 0 || fd > INT_MAX) return {};
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%" PRId64, fd);
  char target[256];
  const ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return {};
  return std::string(target, static_cast<std::size_t>(n));
}

void append_seconds(std::string& out, double seconds) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3fs", seconds);
  out += buf;
}

void append_task(std::string& out, const detail::promise_base& t, std::int64_t now_coarse,
                 std::int64_t now_steady) {
  const detail::promise_base::wait_snapshot w = t.wait();
  char head[64];
  std::snprintf(head, sizeof head, "task %" PRIu64 " \"", t.id());
  out += head;
  for (char c : t.name()) out += (c == '"' || c == '\n') ? '?' : c;
  out += "\" ";
  if (w.kind == detail::wait_arg::queued) {
    out += "queued";
  } else if (w.what == nullptr) {
    out += "running";
  } else {
    out += "waiting on ";
    out += label_text(w.what);
    char arg[64];
    switch (w.kind) {
      case detail::wait_arg::fd: {
        std::snprintf(arg, sizeof arg, " fd %" PRId64, w.arg);
        out += arg;
        const std::string target = fd_target(w.arg);
        if (!target.empty()) out += " (" + target + ")";
        break;
      }
      case detail::wait_arg::deadline:
        out += " until ";
        out += w.arg >= now_steady ? "+" : "-";
        append_seconds(out, static_cast<double>(w.arg >= now_steady ? w.arg - now_steady
                                                                    : now_steady - w.arg) /
                                1e9);
        break;
      case detail::wait_arg::task:
        std::snprintf(arg, sizeof arg, " task %" PRId64, w.arg);
        out += arg;
        break;
      default: break;
    }
    if (w.since_ns != 0) {
      out += " for ";
      append_seconds(out,
                     static_cast<double>(std::max<std::int64_t>(0, now_coarse - w.since_ns)) / 1e9);
    }
  }
  out += '\n';
}

struct dump_context {
  std::string* out;
  std::int64_t now_coarse;
  std::int64_t now_steady;
};

// The name table (detail::set_task_name): few tasks have names, so they are kept here rather
// than a pointer in every frame. Node-based, so a name's characters stay put until erased.
struct name_table {
  std::mutex mutex;
  std::unordered_map<std::uint64_t, std::string> names;
};
name_table& names() {
  static name_table* table = new name_table;  // NOLINT: intentionally immortal (frames may
                                              // outlive main)
  return *table;
}

}  // namespace

namespace detail {

void set_task_name(std::uint64_t id, std::string_view name) {
  name_table& t = names();
  std::lock_guard lock(t.mutex);
  t.names.insert_or_assign(id, std::string(name));
}

std::string_view task_name(std::uint64_t id) noexcept {
  name_table& t = names();
  std::lock_guard lock(t.mutex);
  const auto it = t.names.find(id);
  return it != t.names.end() ? std::string_view(it->second) : std::string_view();
}

void erase_task_name(std::uint64_t id) noexcept {
  name_table& t = names();
  std::lock_guard lock(t.mutex);
  t.names.erase(id);
}

}  // namespace detail

std::string task_dump(executor& ex) {
  std::string out;
  dump_context ctx{
      &out, detail::coarse_now_ns(),
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch())
          .count()};
  // The text is built under the executor's locks: nothing may throw in there.
  out.reserve(1 << 16);
  const bool listed = ex.visit_tasks(
      [](detail::spawn_link& link, void* c) {
        auto& ctx = *static_cast<dump_context*>(c);
        try {
          append_task(*ctx.out, static_cast<detail::promise_base&>(link), ctx.now_coarse,
                      ctx.now_steady);
        } catch (...) {
          // out of memory in the middle of a dump: the lines so far are still worth having
        }
      },
      &ctx);
  if (!listed) out += "weft: this executor's tasks can only be listed from its own thread\n";
  return out;
}

std::string task_dump() {
  executor* ex = executor::current();
  if (ex == nullptr) return "weft: task_dump called outside weft::run\n";
  return task_dump(*ex);
}

void dump_tasks(std::FILE* out) noexcept {
  try {
    const std::string text = task_dump();
    std::fwrite(text.data(), 1, text.size(), out);
  } catch (...) {
    std::fputs("weft: out of memory while writing the task dump\n", out);
  }
  std::fflush(out);
}

}  // namespace weft
