#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;
using weft::task;
namespace io = weft::io;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string templ = (fs::temp_directory_path() / "weft-file-test-XXXXXX").string();
    path = ::mkdtemp(templ.data());
  }
  ~temp_dir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("files: open, write_at, read_at, fsync, stat, close", "[file]") {
  temp_dir dir;
  const std::string name = (dir.path / "data.bin").string();
  weft::run(weft::invoke([&]() -> task<> {
    io::file f = (co_await io::file::open(name, O_RDWR | O_CREAT | O_EXCL, 0600)).value();
    CHECK((::fcntl(f.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
    std::vector<std::byte> data(3 << 20);
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::byte(i % 251);
    (co_await f.write_all_at(data, 4096)).value();
    (co_await f.fsync()).value();
    (co_await f.fsync(true)).value();
    auto st = (co_await f.stat()).value();
    CHECK(st.stx_size == data.size() + 4096);
    CHECK((st.stx_mode & 0777) == 0600);
    std::vector<std::byte> back(data.size());
    std::size_t got = 0;
    while (got < back.size()) {
      auto n = (co_await f.read_at(std::span(back).subspan(got), 4096 + got)).value();
      REQUIRE(n > 0);
      got += n;
    }
    CHECK(back == data);
    auto at_end = co_await f.read_at(back, st.stx_size);
    CHECK(*at_end == 0);
    (co_await f.close()).value();
    CHECK_FALSE(f);
  }));
}

TEST_CASE("file errors name the operation and the cause", "[file]") {
  temp_dir dir;
  weft::run(weft::invoke([&]() -> task<> {
    auto missing = co_await io::file::open((dir.path / "nope").string());
    REQUIRE_FALSE(missing);
    CHECK(missing.error() == std::errc::no_such_file_or_directory);
    CHECK(missing.message() == "openat: No such file or directory");
    auto read_only = (co_await io::file::open("/dev/null", O_RDONLY)).value();
    auto w = co_await read_only.write_at(io::as_bytes(std::string("x")), 0);
    CHECK(w.error() == std::errc::bad_file_descriptor);
    CHECK(w.message() == "write: Bad file descriptor");
    auto whole = co_await io::read_file((dir.path / "nope").string());
    CHECK(whole.error() == std::errc::no_such_file_or_directory);
  }));
}

TEST_CASE("a full disk is reported as ENOSPC by write, not lost", "[file]") {
  weft::run(weft::invoke([&]() -> task<> {
    io::file full = (co_await io::file::open("/dev/full", O_WRONLY)).value();
    auto r = co_await full.write_all_at(io::as_bytes(std::string(100, 'x')), 0);
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::no_space_on_device);
  }));
}

TEST_CASE("read_file and write_file round-trip, /proc files included", "[file]") {
  temp_dir dir;
  const std::string name = (dir.path / "text.txt").string();
  weft::run(weft::invoke([&]() -> task<> {
    std::string text;
    for (int i = 0; i < 100000; ++i) text += std::to_string(i) + '\n';
    (co_await io::write_file(name, io::as_bytes(text), true)).value();
    CHECK((co_await io::read_file(name)).value() == text);
    // /proc files report size 0: read_file reads to the end regardless.
    std::string status = (co_await io::read_file("/proc/self/status")).value();
    CHECK(status.find("Name:") != std::string::npos);
  }));
}

TEST_CASE("open_beneath refuses paths that leave the directory", "[file]") {
  temp_dir dir;
  fs::create_directory(dir.path / "root");
  {
    std::FILE* f = std::fopen((dir.path / "root" / "inside.txt").c_str(), "w");
    std::fputs("inside", f);
    std::fclose(f);
  }
  fs::create_symlink("/etc/passwd", dir.path / "root" / "escape");
  weft::run(weft::invoke([&]() -> task<> {
    io::file root =
        (co_await io::file::open((dir.path / "root").string(), O_RDONLY | O_DIRECTORY)).value();
    CHECK(co_await io::file::open_beneath(root, "inside.txt"));
    auto dots = co_await io::file::open_beneath(root, "../root/inside.txt");
    CHECK(dots.error() == std::errc::cross_device_link);
    auto link = co_await io::file::open_beneath(root, "escape");
    CHECK(link.error() == std::errc::cross_device_link);
    auto absolute = co_await io::file::open_beneath(root, "/etc/passwd");
    CHECK(absolute.error() == std::errc::cross_device_link);
  }));
}

TEST_CASE("pipes: more than a pipe buffer through, then end of stream", "[pipe]") {
  weft::run(weft::invoke([&]() -> task<> {
    auto [reader, writer] = io::make_pipe().value();
    CHECK((::fcntl(reader.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
    const std::string big(1 << 20, 'p');  // 16 pipe buffers: the writer must wait for us
    auto w = weft::spawn(weft::invoke([&, &writer = writer]() -> task<> {
      (co_await writer.write_all(io::as_bytes(big))).value();
      writer = io::pipe_writer();  // close: the reader sees end of stream
    }));
    std::string got;
    auto n = (co_await reader.read_to_end(got)).value();
    co_await w;
    CHECK(n == big.size());
    CHECK(got == big);
  }));
}

TEST_CASE("writing to a pipe nobody reads gives EPIPE, not SIGPIPE", "[pipe]") {
  weft::run(weft::invoke([&]() -> task<> {
    auto [reader, writer] = io::make_pipe().value();
    reader = io::pipe_reader();
    auto r = co_await writer.write(io::as_bytes(std::string("x")));
    CHECK(r.error() == std::errc::broken_pipe);
    std::byte b[4];
    auto [r2, w2] = io::make_pipe().value();
    w2 = io::pipe_writer();
    auto e = co_await r2.read_exact(b);
    CHECK(e.error() == weft::errc::end_of_stream);
  }));
}

TEST_CASE("a pipe read is cancelled by with_timeout", "[pipe]") {
  weft::run(weft::invoke([&]() -> task<> {
    auto [reader, writer] = io::make_pipe().value();
    std::byte b[4];
    const bool timed_out = co_await weft::testing::ends_timed_out(
        weft::with_timeout(10ms, weft::invoke([&]() -> task<io::result<std::size_t>> {
                             co_return co_await reader.read(b);
                           })));
    CHECK(timed_out);
  }));
}

TEST_CASE("signal_set delivers SIGTERM through the ring", "[signal]") {
  weft::run(weft::invoke([&]() -> task<> {
    io::signal_set signals{SIGUSR1, SIGTERM};
    ::kill(::getpid(), SIGTERM);  // blocked: it waits for the signalfd
    auto s = co_await weft::with_timeout(
        5s, weft::invoke([&]() -> task<io::result<int>> { co_return co_await signals.wait(); }));
    CHECK(*s == SIGTERM);
  }));
}
