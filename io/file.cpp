#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <system_error>
#include <weft/io/file.hpp>
#include <weft/io/pipe.hpp>
#include <weft/io/signal.hpp>

namespace weft::io {

// ---- files

task<result<void>> file::write_all_at(std::span<const std::byte> buffer,
                                      std::uint64_t offset) const {
  std::size_t done = 0;
  while (done < buffer.size()) {
    result<std::size_t> r = co_await write_at(buffer.subspan(done), offset + done);
    if (!r) co_return r.full_error();
    if (*r == 0) co_return io_error{std::make_error_code(std::errc::no_space_on_device), "write"};
    done += *r;
  }
  co_return result<void>();
}

task<result<std::string>> read_file(std::string path) {
  result<file> opened = co_await file::open(std::move(path), O_RDONLY);
  if (!opened) co_return opened.full_error();
  file& f = opened.value();
  result<struct statx> st = co_await f.stat();
  if (!st) co_return st.full_error();
  std::string data;
  // The size is a hint (files in /proc report 0): read in chunks until end of file.
  std::size_t capacity = st->stx_size > 0 ? st->stx_size + 1 : 4096;
  data.resize(capacity);
  std::size_t used = 0;
  for (;;) {
    if (used == data.size()) data.resize(data.size() * 2);
    result<std::size_t> r = co_await f.read_at(
        std::as_writable_bytes(std::span(data.data() + used, data.size() - used)), used);
    if (!r) co_return r.full_error();
    if (*r == 0) break;
    used += *r;
  }
  data.resize(used);
  co_return data;
}

task<result<void>> write_file(std::string path, std::span<const std::byte> data, bool sync,
                              mode_t mode) {
  result<file> opened = co_await file::open(std::move(path), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (!opened) co_return opened.full_error();
  file& f = opened.value();
  result<void> w = co_await f.write_all_at(data, 0);
  if (!w) co_return w;
  if (sync) {
    result<void> s = co_await f.fsync();
    if (!s) co_return s;
  }
  co_return co_await f.close();
}

// ---- pipes

task<result<void>> pipe_reader::read_exact(std::span<std::byte> buffer) const {
  return detail::read_exact_with([this](std::span<std::byte> rest, bool) { return read(rest); },
                                 buffer, "read");
}

task<result<std::size_t>> pipe_reader::read_to_end(std::string& out) const {
  std::size_t total = 0;
  for (;;) {
    const std::size_t old = out.size();
    out.resize(old + 65536);
    result<std::size_t> r =
        co_await read(std::as_writable_bytes(std::span(out.data() + old, std::size_t{65536})));
    out.resize(old + (r ? *r : 0));
    if (!r) co_return r.full_error();
    if (*r == 0) co_return total;
    total += *r;
  }
}

task<result<void>> pipe_writer::write_all(std::span<const std::byte> buffer) const {
  return detail::write_all_with([this](std::span<const std::byte> rest) { return write(rest); },
                                buffer);
}

result<std::pair<pipe_reader, pipe_writer>> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return io_error{std::error_code(errno, std::generic_category()), "pipe2"};
  }
  return std::pair(pipe_reader(io::fd(fds[0])), pipe_writer(io::fd(fds[1])));
}

// ---- signals

signal_set::signal_set(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  signals_.assign(signals.begin(), signals.end());
  ::pthread_sigmask(SIG_BLOCK, &set, &previous_);
  fd_ = io::fd(::signalfd(-1, &set, SFD_CLOEXEC));
  if (!fd_) {
    const int err = errno;
    ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    throw std::system_error(err, std::generic_category(), "signalfd");
  }
}

signal_set::~signal_set() {
  fd_.reset();
  // Signals that arrived after the last wait() (a second Ctrl-C during a graceful shutdown)
  // are consumed here: unblocking them would apply their default action and turn a clean
  // exit into death by signal.
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals_) sigaddset(&set, s);
  const timespec zero{};
  while (::sigtimedwait(&set, nullptr, &zero) > 0) {
  }
  ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
}

}  // namespace weft::io
