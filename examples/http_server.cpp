// An HTTP/1.1 server: keep-alive, pipelining, static files under a root, limits and timeouts.
//
//   ./http_server --port=P [--root=DIR] [--host=127.0.0.1] [--mode=M --workers=N]
//                 [--idle-timeout=15] [--header-timeout=10] [--drain-timeout=5]
//
// GET / answers "Hello, World!". GET /PATH serves DIR/PATH, never anything outside DIR: the
// path is decoded and ".." refused (403), then opened with openat2(RESOLVE_BENEATH), so
// neither an encoded "..", nor a symlink that points out of the root, gets out (403).
// HEAD is answered like GET without the body. Malformed requests get 400, other methods 405 or
// 501, an over-long request line 414, over-large headers 431, a body over 1 MiB 413; each error
// closes the connection. A connection idle for --idle-timeout seconds is closed; a request head
// not complete --header-timeout seconds after its first byte gets 408 (slow clients cannot hold
// the server). SIGINT/SIGTERM: stop accepting, close idle connections, let requests in flight
// finish for up to --drain-timeout seconds, exit 0.
// SIGUSR1: write the task dump (every live task and what it waits on) to stderr, keep serving.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/weft.hpp>
#include "http_parser.hpp"
#include "server_support.hpp"

namespace {

namespace io = weft::io;
namespace http = weft::http;
using seconds = std::chrono::duration<double>;
using clock_type = weft::clock;

struct config {
  http::limits limits;
  seconds idle_timeout{15};
  seconds header_timeout{10};
  seconds write_timeout{30};
  std::optional<io::file> root;
};

// The live connections, so that a shutdown can close the idle ones at once instead of waiting
// for their idle timeout. Locked: connections may run on several threads.
class connection_registry {
 public:
  struct entry {
    int fd;
    std::atomic<bool> idle{true};
  };

  bool add(entry& e) {
    std::lock_guard lock(mutex_);
    live_.insert(&e);
    return !stopping_.load();
  }
  void remove(entry& e) {
    std::lock_guard lock(mutex_);
    live_.erase(&e);
  }
  // Marks `e` idle or busy; returns false when the server is stopping (an idle connection should
  // then close rather than wait for another request). Lock-free: it runs twice per request.
  // With stop(), a Dekker pair on seq_cst atomics: either stop() sees the connection idle and
  // shuts its reads down, or the connection sees `stopping` and closes itself.
  bool set_idle(entry& e, bool idle) {
    e.idle.store(idle);
    return !stopping_.load();
  }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  // Shutting down the read side ends a pending read with end of stream: the idle connections
  // close by themselves; busy ones finish their request and then close.
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_.store(true);
    for (entry* e : live_) {
      if (e->idle.load()) ::shutdown(e->fd, SHUT_RD);
    }
  }

 private:
  std::mutex mutex_;
  std::set<entry*> live_;
  std::atomic<bool> stopping_{false};
};

// The bytes received on a connection and not yet consumed. Unlike std::string::resize, making
// room to read into does not zero the room (that memset was 5% of a keep-alive server's time).
class input_buffer {
 public:
  const char* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  // At least `want` writable bytes after the content; throws std::bad_alloc.
  std::span<std::byte> spare(std::size_t want) {
    if (capacity_ - size_ < want) {
      const std::size_t grown = std::max(capacity_ * 2, size_ + want);
      auto bigger = std::make_unique_for_overwrite<char[]>(grown);
      if (size_ > 0) std::memcpy(bigger.get(), data_.get(), size_);
      data_ = std::move(bigger);
      capacity_ = grown;
    }
    return {reinterpret_cast<std::byte*>(data_.get() + size_), capacity_ - size_};
  }
  void commit(std::size_t n) noexcept { size_ += n; }
  void consume_front(std::size_t n) noexcept {
    if (n < size_) std::memmove(data_.get(), data_.get() + n, size_ - n);
    size_ = n < size_ ? size_ - n : 0;
  }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

std::string error_response(int status) {
  const std::string body = fmt::format("{} {}\n", status, http::reason_phrase(status));
  const std::string_view extra = status == 405 ? "Allow: GET, HEAD\r\n" : "";
  return http::response_head(status, "text/plain; charset=utf-8", body.size(), false, extra) + body;
}

// Reads into `buffer` for at most `limit`. nullopt when the time ran out.
weft::task<std::optional<io::result<std::size_t>>> read_within(const io::tcp_stream& conn,
                                                               std::span<std::byte> buffer,
                                                               seconds limit) {
  try {
    co_return co_await weft::with_timeout(limit, conn.read(buffer));
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::timed_out) throw;
  }
  co_return std::nullopt;
}

// Sends all of `data` within the write timeout. False when the peer is gone or too slow.
weft::task<bool> send_within(const io::tcp_stream& conn, std::span<const std::byte> data,
                             seconds limit) {
  try {
    auto r = co_await weft::with_timeout(limit, conn.write_all(data));
    co_return static_cast<bool>(r);
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::timed_out) throw;
  }
  co_return false;
}

// Closes after an error response without losing it: closing a socket whose receive buffer
// still holds unread bytes (the rest of a rejected body) makes the kernel send a reset, and the
// client may then never read the response. So: send FIN, then read and discard what the client
// still sends, for at most 2 s and 8 MiB, before the close.
weft::task<> linger_close(const io::tcp_stream& conn) {
  (void)co_await conn.shutdown(SHUT_WR);
  const auto deadline = clock_type::now() + std::chrono::seconds(2);
  std::array<std::byte, 16384> scratch;
  std::size_t discarded = 0;
  while (discarded < (8u << 20)) {
    const seconds remaining = deadline - clock_type::now();
    if (remaining.count() <= 0) break;
    auto n = co_await read_within(conn, scratch, remaining);
    if (!n || !*n || **n == 0) break;
    discarded += **n;
  }
}

// What a request for a file turns into: an error status, or an open file with its size.
struct file_answer {
  int status = 200;
  io::file file;
  std::uint64_t size = 0;
};

weft::task<file_answer> open_file(const config& cfg, const std::string& path) {
  file_answer a;
  if (!cfg.root) {
    a.status = 404;
    co_return a;
  }
  auto f = co_await io::file::open_beneath(*cfg.root, path, O_RDONLY | O_NONBLOCK);
  if (!f) {
    const auto e = f.error();
    if (e == std::errc::no_such_file_or_directory || e == std::errc::not_a_directory ||
        e == std::errc::filename_too_long) {
      a.status = 404;
    } else if (e == std::errc::cross_device_link || e == std::errc::too_many_symbolic_link_levels ||
               e == std::errc::permission_denied || e == std::errc::operation_not_permitted) {
      a.status = 403;  // outside the root, or not ours to read
    } else {
      a.status = 500;
    }
    co_return a;
  }
  auto st = co_await f->stat();
  if (!st) {
    a.status = 500;
    co_return a;
  }
  if (!S_ISREG(st->stx_mode)) {
    a.status = S_ISDIR(st->stx_mode) ? 404 : 403;  // no listings; no devices or fifos
    co_return a;
  }
  // O_NONBLOCK kept a FIFO from blocking the open; on a regular file it would make reads on
  // file systems without non-blocking support (FUSE, NFS) fail with EAGAIN instead of waiting.
  const int flags = ::fcntl(f->native_handle(), F_GETFL);
  if (flags >= 0) ::fcntl(f->native_handle(), F_SETFL, flags & ~O_NONBLOCK);
  a.file = std::move(*f);
  a.size = st->stx_size;
  co_return a;
}

// One connection: reads request heads, discards their bodies and answers them in order
// (pipelined answers go out together), until the client closes, a timeout, an error response
// or the shutdown. Each step below is one seam of that loop.
class http_connection {
 public:
  http_connection(io::tcp_stream& conn, const config& cfg, connection_registry& registry,
                  connection_registry::entry& self)
      : conn_(conn), cfg_(cfg), registry_(registry), self_(self) {}

  weft::task<> run() {
    for (;;) {
      const std::string_view pending(in_.data() + start_, in_.size() - start_);
      http::parse_result pr{};
      if (!pending.empty()) pr = http::parse_request(pending, cfg_.limits, req_);
      if (pr.status == http::parse_status::error) {
        co_await answer_error(pr.error_status);
        break;
      }
      if (pr.status == http::parse_status::complete) {
        if (!co_await answer_request(pr.consumed)) break;
        continue;  // more pipelined requests may be buffered already
      }
      if (!co_await read_head()) break;
    }
    if (linger_) co_await linger_close(conn_);
  }

 private:
  static constexpr std::size_t kChunk = 256 * 1024;
  static constexpr std::uint64_t kSendfileFrom = 32 * 1024;  // smaller files: one copy, one send
  struct free_deleter {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };

  // Sends what is pending and an error response, and closes gently: the client must be able
  // to read it before the close (the caller stops after this).
  weft::task<> answer_error(int status) {
    out_ += error_response(status);
    co_await send_within(conn_, io::as_bytes(out_), cfg_.write_timeout);
    linger_ = true;
  }

  // The request whose head takes `consumed` bytes of the buffer. False: close the connection.
  weft::task<bool> answer_request(std::size_t consumed) {
    static const std::string hello_body = "Hello, World!";
    registry_.set_idle(self_, false);
    head_started_ = {};  // the next request's clock starts with its first byte
    if (!co_await discard_body(consumed)) co_return false;
    const bool keep = req_.keep_alive && !registry_.stopping();
    const http::method_kind kind = http::classify_method(req_.method);
    if (kind == http::method_kind::not_allowed || kind == http::method_kind::not_implemented) {
      co_await answer_error(kind == http::method_kind::not_allowed ? 405 : 501);
      co_return false;
    }
    const bool head_only = kind == http::method_kind::head;
    const http::target_result target = http::resolve_target(req_.target);
    if (target.error_status != 0) {
      co_await answer_error(target.error_status);
      co_return false;
    }
    if (target.path.empty()) {
      http::append_response_head(out_, 200, "text/plain; charset=utf-8", hello_body.size(), keep);
      if (!head_only) out_ += hello_body;
    } else if (!co_await answer_file(target.path, keep, head_only)) {
      co_return false;
    }
    if (!keep) {
      co_await send_within(conn_, io::as_bytes(out_), cfg_.write_timeout);
      co_return false;
    }
    co_return true;
  }

  // Skips the request's body (the server takes none): what is buffered, then the rest from the
  // wire. False when the connection was lost or too slow.
  weft::task<bool> discard_body(std::size_t consumed) {
    std::size_t body_left = req_.content_length;
    std::size_t after = start_ + consumed;
    const std::size_t buffered = std::min(body_left, in_.size() - after);
    after += buffered;
    body_left -= buffered;
    start_ = after;
    // One deadline for the whole body: a client cannot hold the connection by trickling it.
    const auto body_deadline = clock_type::now() + cfg_.header_timeout;
    while (body_left > 0) {
      std::array<std::byte, 16384> scratch;
      const seconds remaining = body_deadline - clock_type::now();
      auto n =
          co_await read_within(conn_, std::span(scratch).first(std::min(body_left, scratch.size())),
                               remaining.count() > 0 ? remaining : seconds(0));
      if (!n || !*n || **n == 0) co_return false;
      body_left -= **n;
    }
    co_return true;
  }

  // A file under the root: its head and body, or a 404 that keeps the connection, or an error.
  // False: close the connection.
  weft::task<bool> answer_file(const std::string& path, bool keep, bool head_only) {
    file_answer a = co_await open_file(cfg_, path);
    if (a.status != 200) {
      if (a.status == 404 && keep) {  // a missing file is not the client's fault: keep going
        const std::string body = "404 Not Found\n";
        out_ += http::response_head(404, "text/plain; charset=utf-8", body.size(), keep);
        if (!head_only) out_ += body;
        co_return true;
      }
      co_await answer_error(a.status);
      co_return false;
    }
    http::append_response_head(out_, 200, http::content_type_for(path), a.size, keep);
    if (head_only) co_return true;
    if (a.size >= kSendfileFrom) co_return co_await send_large_file(a);
    co_return co_await stream_file(a);
  }

  // Large files go from the page cache to the socket without a copy through user memory, in
  // 1 MiB steps so that a reader that stalls hits the write timeout. The pending responses go
  // first, in the same call.
  weft::task<bool> send_large_file(file_answer& a) {
    bool ok = true;
    std::uint64_t offset = 0;
    std::span<const std::byte> header = io::as_bytes(out_);
    while (ok && offset < a.size) {
      const std::uint64_t step = std::min<std::uint64_t>(a.size - offset, 1 << 20);
      try {
        auto n = co_await weft::with_timeout(cfg_.write_timeout,
                                             conn_.send_file(a.file, offset, step, header));
        ok = static_cast<bool>(n);
      } catch (const std::system_error& e) {
        if (e.code() != weft::errc::timed_out) throw;
        ok = false;
      }
      header = {};
      offset += step;
    }
    out_.clear();
    co_return ok;
  }

  // Streams a smaller file through one per-connection buffer (allocated on the first file, not
  // zeroed). The pending responses and the head share the first send.
  weft::task<bool> stream_file(file_answer& a) {
    if (!file_buffer_) {
      // Page-aligned: copies out of the page cache into a 16-byte-aligned buffer ran several
      // times slower on the benchmark machine (AMD EPYC).
      file_buffer_.reset(static_cast<std::byte*>(std::aligned_alloc(4096, kChunk)));
      if (!file_buffer_) throw std::bad_alloc();
    }
    const std::span<std::byte> buffer(file_buffer_.get(), kChunk);
    std::size_t prefix = 0;
    if (out_.size() <= kChunk / 4) {
      std::memcpy(buffer.data(), out_.data(), out_.size());
      prefix = out_.size();
    } else if (!co_await send_within(conn_, io::as_bytes(out_), cfg_.write_timeout)) {
      co_return false;
    }
    out_.clear();
    std::uint64_t offset = 0;
    bool ok = true;
    // The loop runs at least once when a head is waiting in the buffer, so an empty file still
    // gets its response.
    while (ok && (offset < a.size || prefix > 0)) {
      std::size_t n = 0;
      if (offset < a.size) {
        // Never more than the length announced, even if the file grew meanwhile.
        const std::size_t want = static_cast<std::size_t>(
            std::min<std::uint64_t>(buffer.size() - prefix, a.size - offset));
        auto r = co_await a.file.read_at(buffer.subspan(prefix, want), offset);
        if (!r || *r == 0) co_return false;  // the file shrank or failed: the length is a lie now
        n = *r;
      }
      ok = co_await send_within(conn_, buffer.first(prefix + n), cfg_.write_timeout);
      offset += n;
      prefix = 0;
    }
    co_return ok;
  }

  // The head is incomplete: answers what was parsed so far, then waits for more bytes (an idle
  // connection for the idle timeout, a started head for what is left of the header timeout).
  // False: close the connection.
  weft::task<bool> read_head() {
    if (!out_.empty()) {
      if (!co_await send_within(conn_, io::as_bytes(out_), cfg_.write_timeout)) co_return false;
      out_.clear();
    }
    if (start_ > 0) {
      in_.consume_front(start_);
      start_ = 0;
    }
    seconds limit = cfg_.idle_timeout;
    if (in_.empty()) {
      if (!registry_.set_idle(self_, true)) co_return false;  // stopping: no new request here
    } else {
      if (head_started_ == clock_type::time_point{}) head_started_ = clock_type::now();
      limit = cfg_.header_timeout - (clock_type::now() - head_started_);
    }
    const std::size_t used = in_.size();
    auto n = co_await read_within(conn_, in_.spare(16384).first(16384),
                                  limit.count() > 0 ? limit : seconds(0));
    if (n && *n) in_.commit(**n);
    if (!n) {  // timed out
      if (used > 0) co_await answer_error(408);
      co_return false;
    }
    if (!*n || **n == 0) co_return false;  // reset, or the peer closed
    // The first bytes of a new request: its head must now arrive within header_timeout.
    if (used == 0) head_started_ = clock_type::now();
    registry_.set_idle(self_, false);
    co_return true;
  }

  io::tcp_stream& conn_;
  const config& cfg_;
  connection_registry& registry_;
  connection_registry::entry& self_;
  input_buffer in_;  // bytes received; the ones not consumed yet start at in_.data()[start_]
  std::size_t start_ = 0;
  std::string out_;  // responses to pipelined requests, sent together
  http::request req_;
  clock_type::time_point head_started_{};
  bool linger_ = false;  // close gently: an error response must not be lost to a reset
  std::unique_ptr<std::byte, free_deleter> file_buffer_;
};

weft::task<> serve_http(io::tcp_stream conn, const config& cfg, connection_registry& registry) {
  connection_registry::entry self{conn.native_handle()};
  struct unregister {
    connection_registry& r;
    connection_registry::entry& e;
    ~unregister() { r.remove(e); }
  } guard{registry, self};
  if (!registry.add(self)) co_return;
  try {
    http_connection c(conn, cfg, registry, self);
    co_await c.run();
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::cancelled) fmt::print(stderr, "http_server: {}\n", e.what());
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "http_server: out of memory on one connection; closing it\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"http_server: HTTP/1.1 with keep-alive, pipelining and static files"};
  examples::server_options options;
  options.add_to(app);
  std::string root;
  double idle = 15, header = 10;
  app.add_option("--root", root, "serve the files under DIR (GET / always says Hello)");
  app.add_option("--idle-timeout", idle, "seconds a keep-alive connection may stay idle")
      ->capture_default_str();
  app.add_option("--header-timeout", header,
                 "seconds a request head may take to arrive after its first byte")
      ->capture_default_str();
  if (auto status = examples::parse_or_exit(app, argc, argv, options, "http_server")) {
    return *status;
  }
  if (!(idle > 0 && idle <= 86400) || !(header > 0 && header <= 86400)) {
    fmt::print(stderr, "http_server: timeouts want 0 < S <= 86400 seconds\n{}", app.help());
    return 2;
  }
  config cfg;
  cfg.idle_timeout = seconds(idle);
  cfg.header_timeout = seconds(header);
  if (!root.empty()) {
    io::fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      fmt::print(stderr, "http_server: --root {}: {}\n", root,
                 std::error_code(errno, std::generic_category()).message());
      return 2;
    }
    cfg.root.emplace(std::move(dir));
  }
  connection_registry registry;
  return examples::run_server(
      options, "http_server",
      [&](io::tcp_stream c) { return serve_http(std::move(c), cfg, registry); },
      [&] { registry.stop(); });
}
