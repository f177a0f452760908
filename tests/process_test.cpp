// Child processes: the command builder, spawn errors, environment and working directory, the
// three kinds of stdio, exit statuses and signals, cancellable waits through the pidfd, pipes
// larger than the kernel's buffer, pass_fd and adopt, and the promises about resources: no fd
// and no zombie left behind, no fd inherited by the child but 0, 1, 2 and the ones passed, no
// signal mask or ignored SIGPIPE inherited. Run on every executor mode, and under
// ThreadSanitizer by ./run test (suite 'threads').
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <string>
#include <system_error>
#include <vector>

#include <weft/weft.hpp>
#include "support.hpp"

using namespace std::chrono_literals;
using weft::task;
namespace io = weft::io;

extern char** environ;

using weft::testing::no_children_left;
using weft::testing::open_fd_count;
using weft::testing::process_gone;

namespace {

// Checks that `r` (an io::result) is an error `code` from the step `operation` ("spawn",
// "chdir", "kill", ...): what a command that must not start, or a call that must fail, gives.
template <class Result>
void check_failed(const Result& r, std::errc code, const std::string& operation) {
  REQUIRE_FALSE(r);
  CHECK(r.error() == code);
  CHECK(std::string(r.full_error().operation) == operation);
}

template <class T>
T run_main(task<T> t) {
  return weft::run(std::move(t));
}

io::command shell(std::string script) {
  io::command c("sh");
  c.args({"-c", script});
  return c;
}

// A temporary file that removes itself.
struct temp_file {
  std::string path;
  explicit temp_file(const char* contents, mode_t mode) {
    const char* dir = std::getenv("TMPDIR");
    std::string templ =
        std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/weft-process-test-XXXXXX";
    const int fd = ::mkstemp(templ.data());
    REQUIRE(fd >= 0);
    const std::string text(contents);
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    REQUIRE(::fchmod(fd, mode) == 0);
    ::close(fd);
    path = templ;
  }
  ~temp_file() { ::unlink(path.c_str()); }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
};

// The same small program on every executor mode: output(), eight children waited at once by
// spawned tasks (on several threads in the threaded modes, each wait on the ring of the thread
// that awaits it), and a child spawned in one task, waited in another and killed from the first.
// Gives the sum of the exit codes and the signal.
task<int> spawn_and_wait_everywhere() {
  auto hello = (co_await io::command("echo").arg("hello").output()).value();
  if (hello.out != "hello\n") co_return -1;
  std::vector<weft::join_handle<int>> waits;
  for (int i = 1; i <= 8; ++i) {
    waits.push_back(weft::spawn(weft::invoke([i]() -> task<int> {
      io::child c = shell("sleep 0.05; exit " + std::to_string(i)).spawn().value();
      co_return (co_await c.wait()).value().code;
    })));
  }
  int total = 0;
  for (auto& w : waits) total += co_await w;
  io::child c = io::command("sleep").arg("10").spawn().value();
  auto waiter = weft::spawn(
      weft::invoke([&c]() -> task<int> { co_return (co_await c.wait()).value().signal; }));
  co_await weft::sleep_for(10ms);
  (void)c.kill(SIGTERM);
  total += co_await waiter;
  co_return total;
}

}  // namespace

TEST_CASE("output() collects stdout and the exit status; exit codes are reported", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    io::process_output hello = (co_await io::command("echo").arg("hello").output()).value();
    CHECK(hello.out == "hello\n");
    CHECK(hello.err.empty());
    CHECK(hello.status.success());
    CHECK(hello.status.exited());
    CHECK(hello.status.code == 0);
    CHECK(hello.status.describe() == "exit code 0");

    io::process_output three = (co_await shell("echo oops >&2; exit 3").output()).value();
    CHECK(three.status.code == 3);
    CHECK(three.status.exited());
    CHECK_FALSE(three.status.signaled());
    CHECK_FALSE(three.status.success());
    CHECK(three.status.describe() == "exit code 3");
    CHECK(three.out.empty());
    CHECK(three.err == "oops\n");

    // spawn + wait gives the same status; a second wait gives it again at once.
    io::child c = shell("exit 3").spawn().value();
    CHECK(c.id() > 0);
    CHECK(c.pidfd() >= 0);
    CHECK_FALSE(c.reaped());
    const io::exit_status s = (co_await c.wait()).value();
    CHECK(s.code == 3);
    CHECK(c.reaped());
    auto again = co_await c.wait();
    CHECK(again.value().code == 3);
    CHECK((c.try_wait().value()).value().code == 3);

    // argv reaches the program as given: no shell splitting.
    io::process_output args =
        (co_await io::command("printf").arg("[%s]").arg("a b").arg("").arg("c").output()).value();
    CHECK(args.out == "[a b][][c]");
  }));
}

TEST_CASE("signal names and descriptions", "[process]") {
  CHECK(io::signal_name(SIGKILL) == "SIGKILL");
  CHECK(io::signal_name(SIGTERM) == "SIGTERM");
  CHECK(io::signal_name(77) == "signal 77");
  io::exit_status s;
  s.signal = SIGKILL;
  CHECK(s.signaled());
  CHECK_FALSE(s.exited());
  CHECK_FALSE(s.success());
  CHECK(s.describe() == "killed by signal 9 (SIGKILL)");
  s.core_dumped = true;
  CHECK(s.describe() == "killed by signal 9 (SIGKILL), core dumped");
}

TEST_CASE("a program that cannot run is a spawn error; nothing is left behind", "[process]") {
  const std::size_t fds_before = open_fd_count();
  {
    auto r = io::command("/nonexistent/prog").std_out(io::stdio::pipe).spawn();
    check_failed(r, std::errc::no_such_file_or_directory, "spawn");
    CHECK(r.message() == "spawn: No such file or directory");
  }
  {
    // A bare name is searched in PATH, and not found there.
    auto r = io::command("weft-no-such-program-4f1c9a")
                 .std_in(io::stdio::pipe)
                 .std_out(io::stdio::pipe)
                 .std_err(io::stdio::pipe)
                 .spawn();
    check_failed(r, std::errc::no_such_file_or_directory, "spawn");
  }
  {
    temp_file script("#!/bin/sh\nexit 0\n", 0644);  // not executable
    auto r = io::command(script.path).spawn();
    check_failed(r, std::errc::permission_denied, "spawn");
  }
  {
    auto r = io::command("true").cwd("/nonexistent/weft-dir").std_out(io::stdio::pipe).spawn();
    check_failed(r, std::errc::no_such_file_or_directory, "chdir");
  }
  {
    temp_file not_a_dir("", 0644);
    auto r = io::command("true").cwd(not_a_dir.path).spawn();
    check_failed(r, std::errc::not_a_directory, "chdir");
  }
  // output() reports the same error rather than a child that exits 127.
  run_main(weft::invoke([]() -> task<> {
    auto r = co_await io::command("/nonexistent/prog").output();
    check_failed(r, std::errc::no_such_file_or_directory, "spawn");
  }));
  CHECK(open_fd_count() == fds_before);
  CHECK(no_children_left());
}

TEST_CASE("the child's environment: set, replace, remove, clear", "[process]") {
  REQUIRE(::setenv("WEFT_TEST_INHERITED", "parent", 1) == 0);
  REQUIRE(::setenv("WEFT_X", "0", 1) == 0);
  run_main(weft::invoke([]() -> task<> {
    // Inherited by default.
    auto inherited = (co_await shell("echo \"[$WEFT_TEST_INHERITED]\"").output()).value();
    CHECK(inherited.out == "[parent]\n");

    // env() replaces the inherited value: one entry, the new one.
    auto set = (co_await io::command("/usr/bin/env").env("WEFT_X", "1").output()).value();
    CHECK(set.status.success());
    CHECK(set.out.find("WEFT_X=1\n") != std::string::npos);
    CHECK(set.out.find("WEFT_X=0") == std::string::npos);
    CHECK(set.out.find("WEFT_TEST_INHERITED=parent\n") != std::string::npos);
    auto echoed = (co_await shell("echo $WEFT_X").env("WEFT_X", "1").output()).value();
    CHECK(echoed.out == "1\n");

    // env_remove() takes out an inherited variable, and no other.
    auto removed =
        (co_await io::command("/usr/bin/env").env_remove("WEFT_TEST_INHERITED").output()).value();
    CHECK(removed.status.success());
    CHECK(removed.out.find("WEFT_TEST_INHERITED") == std::string::npos);
    CHECK(removed.out.find("WEFT_X=0\n") != std::string::npos);
    // A prefix of a name is another name.
    auto prefix = (co_await io::command("/usr/bin/env").env_remove("WEFT_TEST").output()).value();
    CHECK(prefix.out.find("WEFT_TEST_INHERITED=parent\n") != std::string::npos);

    // env_clear(): an empty environment; the program is still found in the parent's PATH.
    auto cleared = (co_await io::command("/usr/bin/env").env_clear().output()).value();
    CHECK(cleared.status.success());
    CHECK(cleared.out.empty());
    auto by_name = (co_await io::command("env").env_clear().env("ONLY", "this").output()).value();
    CHECK(by_name.status.success());
    CHECK(by_name.out == "ONLY=this\n");
  }));
  ::unsetenv("WEFT_TEST_INHERITED");
  ::unsetenv("WEFT_X");
}

TEST_CASE("cwd() sets the child's working directory", "[process]") {
  char expected[PATH_MAX];
  REQUIRE(::realpath("/tmp", expected) != nullptr);
  run_main(weft::invoke([&]() -> task<> {
    auto r = (co_await io::command("pwd").cwd("/tmp").output()).value();
    CHECK(r.status.success());
    CHECK(r.out == std::string(expected) + "\n");
    auto root = (co_await io::command("pwd").cwd("/").output()).value();
    CHECK(root.out == "/\n");
  }));
}

TEST_CASE("stdio: null swallows output, a stdin pipe feeds the child", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    // stdout at /dev/null: nothing to read, and the child is none the worse.
    io::child quiet = io::command("echo").arg("x").std_out(io::stdio::null).spawn().value();
    CHECK_FALSE(quiet.std_out());
    CHECK_FALSE(quiet.std_in());
    CHECK_FALSE(quiet.std_err());
    auto quiet_status = co_await quiet.wait();
    CHECK(quiet_status.value().success());
    // stdin at /dev/null reads end of file at once.
    auto empty = (co_await io::command("cat").std_in(io::stdio::null).output()).value();
    CHECK(empty.status.success());
    CHECK(empty.out.empty());

    io::child sort = io::command("sort")
                         .std_in(io::stdio::pipe)
                         .std_out(io::stdio::pipe)
                         .env("LC_ALL", "C")
                         .spawn()
                         .value();
    REQUIRE(sort.std_in());
    REQUIRE(sort.std_out());
    CHECK_FALSE(sort.std_err());
    const std::string lines = "b\na\n";
    (co_await sort.std_in().write_all(io::as_bytes(lines))).value();
    sort.std_in() = io::pipe_writer();  // closes: sort sees end of file
    std::string sorted;
    auto sorted_count = co_await sort.std_out().read_to_end(sorted);
    CHECK(sorted_count.value() == 4);
    CHECK(sorted == "a\nb\n");
    auto sort_status = co_await sort.wait();
    CHECK(sort_status.value().success());

    // output() on a child with a stdin pipe closes stdin first.
    io::child cat = io::command("cat")
                        .std_in(io::stdio::pipe)
                        .std_out(io::stdio::pipe)
                        .std_err(io::stdio::pipe)
                        .spawn()
                        .value();
    auto all = (co_await weft::with_timeout(5s, cat.output())).value();
    CHECK(all.status.success());
    CHECK(all.out.empty());
    CHECK(cat.reaped());
  }));
}

TEST_CASE("kill() ends a child with a signal; after reaping it gives ESRCH", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    io::child c = io::command("sleep").arg("10").spawn().value();
    const auto start = std::chrono::steady_clock::now();
    CHECK(c.kill(SIGTERM));
    const io::exit_status s = (co_await c.wait()).value();
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(s.signaled());
    CHECK_FALSE(s.exited());
    CHECK(s.signal == SIGTERM);
    CHECK(s.code == -1);
    CHECK_FALSE(s.success());
    CHECK(s.describe().find("SIGTERM") != std::string::npos);

    auto again = c.kill(SIGTERM);
    check_failed(again, std::errc::no_such_process, "kill");

    // The default signal is SIGKILL.
    io::child k = io::command("sleep").arg("10").spawn().value();
    CHECK(k.kill());
    auto killed = co_await k.wait();
    CHECK(killed.value().signal == SIGKILL);

    // An empty child has nothing to signal or wait for.
    io::child empty;
    CHECK(empty.pidfd() == -1);
    CHECK(empty.kill().error() == std::errc::no_such_process);
    CHECK_FALSE(empty.try_wait());
  }));
  CHECK(no_children_left());
}

TEST_CASE("a wait cut short by with_timeout leaves the child running and waitable", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    io::child c = io::command("sleep").arg("10").spawn().value();
    const auto start = std::chrono::steady_clock::now();
    const bool timed_out =
        co_await weft::testing::ends_timed_out(weft::with_timeout(50ms, c.wait()));
    CHECK(timed_out);
    CHECK(std::chrono::steady_clock::now() - start < 2s);
    // Still running: nothing was killed (a signal sent would have ended it by now).
    co_await weft::sleep_for(100ms);
    auto running = c.try_wait();
    REQUIRE(running);
    CHECK_FALSE(running->has_value());
    CHECK_FALSE(c.reaped());
    CHECK(c.kill(SIGTERM));
    const io::exit_status s = (co_await c.wait()).value();
    CHECK(s.signal == SIGTERM);

    // A cancelled wait (join_handle::cancel) ends with errc::cancelled, child untouched.
    io::child d = io::command("sleep").arg("10").spawn().value();
    auto waiter = weft::spawn(d.wait());
    co_await weft::sleep_for(20ms);
    waiter.cancel();
    const bool cancelled = co_await weft::testing::ends_cancelled(waiter);
    CHECK(cancelled);
    co_await weft::sleep_for(100ms);
    CHECK_FALSE(d.try_wait().value().has_value());
    // A short child waited with a generous limit gives its status.
    io::child e = shell("exit 7").spawn().value();
    auto seven = co_await weft::with_timeout(5s, e.wait());
    CHECK(seven.value().code == 7);
  }));
  CHECK(no_children_left());
}

TEST_CASE("a child that closes its stdout early gives end of stream at once", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    io::child c = shell("exec 1>&-; sleep 0.5; exit 0").std_out(io::stdio::pipe).spawn().value();
    std::string got;
    auto eof = co_await c.std_out().read_to_end(got);
    CHECK(eof.value() == 0);
    CHECK(got.empty());
    // End of stream came while the child still sleeps, not when it exited.
    CHECK_FALSE(c.try_wait().value().has_value());
    auto slept = co_await c.wait();
    CHECK(slept.value().success());
  }));
}

TEST_CASE("writing to a child that exited gives EPIPE, not SIGPIPE", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    io::child c = io::command("true").std_in(io::stdio::pipe).spawn().value();
    const std::string mib(1 << 20, 'x');  // more than the pipe holds
    auto w = co_await c.std_in().write_all(io::as_bytes(mib));
    check_failed(w, std::errc::broken_pipe, "write");
    auto true_status = co_await c.wait();
    CHECK(true_status.value().success());
  }));
}

TEST_CASE("a child writing more than a pipe holds before anyone reads: no deadlock", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    io::child c = io::command("head")
                      .args({"-c", "1000000", "/dev/zero"})
                      .std_out(io::stdio::pipe)
                      .spawn()
                      .value();
    co_await weft::sleep_for(100ms);  // the child fills the pipe and blocks meanwhile
    CHECK_FALSE(c.try_wait().value().has_value());
    std::string out;
    auto count = co_await c.std_out().read_to_end(out);
    CHECK(count.value() == 1000000);
    CHECK(out.size() == 1000000);
    CHECK(std::all_of(out.begin(), out.end(), [](char ch) { return ch == '\0'; }));
    auto head_status = co_await c.wait();
    CHECK(head_status.value().success());

    // The same through child::output(), after a pause.
    io::child d = io::command("head")
                      .args({"-c", "1000000", "/dev/zero"})
                      .std_out(io::stdio::pipe)
                      .spawn()
                      .value();
    co_await weft::sleep_for(100ms);
    auto dout = (co_await d.output()).value();
    CHECK(dout.status.success());
    CHECK(dout.out.size() == 1000000);

    // stdout and stderr both over a pipe's worth: output() reads both concurrently.
    auto both =
        (co_await shell("head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2").output())
            .value();
    CHECK(both.status.success());
    CHECK(both.out.size() == 1000000);
    CHECK(both.err.size() == 1000000);
    // The other order: stderr filled first while stdout waits.
    auto reversed =
        (co_await shell("head -c 700000 /dev/zero >&2; head -c 900000 /dev/zero").output()).value();
    CHECK(reversed.out.size() == 900000);
    CHECK(reversed.err.size() == 700000);
  }));
}

TEST_CASE("1000 children in a row leave no fd and no zombie", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    const std::size_t fds_before = open_fd_count();
    int successes = 0;
    for (int i = 0; i < 1000; ++i) {
      io::child c = io::command("/bin/true").spawn().value();
      if ((co_await c.wait()).value().success()) ++successes;
    }
    CHECK(successes == 1000);
    // With pipes too, through output().
    for (int i = 0; i < 100; ++i) {
      auto r = (co_await io::command("/bin/true").output()).value();
      if (!r.status.success()) break;
      ++successes;
    }
    CHECK(successes == 1100);
    CHECK(open_fd_count() == fds_before);
    CHECK(no_children_left());
  }));
}

TEST_CASE("a child dropped without waiting is killed and reaped", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    pid_t pid = -1;
    {
      io::child c = io::command("sleep").arg("10").std_out(io::stdio::pipe).spawn().value();
      pid = c.id();
      REQUIRE(pid > 0);
      CHECK(::kill(pid, 0) == 0);
    }
    CHECK(process_gone(pid));
    CHECK(no_children_left());

    // Moving a child moves the ownership: the moved-from one does nothing on destruction, and
    // assigning over a running child ends that one.
    io::child a = io::command("sleep").arg("10").spawn().value();
    const pid_t first = a.id();
    io::child b = std::move(a);
    CHECK(b.id() == first);
    CHECK(::kill(first, 0) == 0);
    b = io::command("sleep").arg("10").spawn().value();
    CHECK(process_gone(first));
    const pid_t second = b.id();
    CHECK(b.kill());
    auto replaced = co_await b.wait();
    CHECK(replaced.value().signal == SIGKILL);
    CHECK(process_gone(second));
    co_return;
  }));
  // Outside any executor too.
  pid_t pid = -1;
  {
    io::child c = io::command("sleep").arg("10").spawn().value();
    pid = c.id();
  }
  CHECK(process_gone(pid));
  CHECK(no_children_left());
}

TEST_CASE("the child starts with SIGPIPE at its default and no signal blocked", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    // The runtime ignores SIGPIPE; the child must not: `yes` writing to a closed pipe dies of
    // SIGPIPE (with SIGPIPE ignored it would get EPIPE and exit 1).
    io::child yes = io::command("yes").std_out(io::stdio::pipe).spawn().value();
    std::array<std::byte, 16> some{};
    auto n = co_await yes.std_out().read(some);
    CHECK(n.value() > 0);
    yes.std_out() = io::pipe_reader();  // the read end closes
    auto piped = co_await weft::with_timeout(2s, yes.wait());
    CHECK(piped.value().signal == SIGPIPE);
  }));
  // A parent thread that blocks SIGTERM (as a signal_set does) still spawns children that
  // SIGTERM ends.
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  REQUIRE(::pthread_sigmask(SIG_BLOCK, &term, &old) == 0);
  int signal = 0;
  try {
    signal = run_main(weft::invoke([]() -> task<int> {
      io::child c = io::command("sleep").arg("10").spawn().value();
      REQUIRE(c.kill(SIGTERM));
      try {
        co_return (co_await weft::with_timeout(2s, c.wait())).value().signal;
      } catch (const std::system_error&) {
        // A blocked SIGTERM stays pending: the destructor's SIGKILL ends the child.
      }
      co_return 0;
    }));
  } catch (...) {
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    throw;
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  CHECK(signal == SIGTERM);
  CHECK(no_children_left());
}

TEST_CASE("pass_fd() gives the child fds 3, 4... in the order passed", "[process]") {
  const std::size_t fds_before = open_fd_count();
  run_main(weft::invoke([]() -> task<> {
    auto [first_reader, first_writer] = io::make_pipe().value();
    auto [second_reader, second_writer] = io::make_pipe().value();
    // Passed in the opposite order to the one they were opened in.
    io::child c = shell("echo to3 >&3; echo to4 >&4; ls /proc/self/fd | tr '\\n' ' '")
                      .pass_fd(second_writer.native_handle())
                      .pass_fd(first_writer.native_handle())
                      .std_out(io::stdio::pipe)
                      .spawn()
                      .value();
    // The parent's fds are untouched: still open, still close-on-exec.
    CHECK((::fcntl(first_writer.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((::fcntl(second_writer.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
    first_writer = io::pipe_writer();
    second_writer = io::pipe_writer();
    std::string on_first, on_second, listing;
    auto first_count = co_await first_reader.read_to_end(on_first);
    auto second_count = co_await second_reader.read_to_end(on_second);
    auto listing_count = co_await c.std_out().read_to_end(listing);
    CHECK(first_count);
    CHECK(second_count);
    CHECK(listing_count);
    CHECK(on_second == "to3\n");
    CHECK(on_first == "to4\n");
    // 0 to 4, and the directory ls reads (5): nothing else.
    CHECK(listing == "0 1 2 3 4 5 ");
    auto status = co_await c.wait();
    CHECK(status.value().success());

    // A bad fd is an error of its own, and spawns nothing.
    auto bad = io::command("true").pass_fd(-1).spawn();
    check_failed(bad, std::errc::bad_file_descriptor, "pass_fd");
  }));
  CHECK(open_fd_count() == fds_before);
  CHECK(no_children_left());
}

TEST_CASE("adopt() takes charge of a child started otherwise", "[process]") {
  run_main(weft::invoke([]() -> task<> {
    char sh[] = "sh";
    char dash_c[] = "-c";
    char script[] = "exit 4";
    char* argv[] = {sh, dash_c, script, nullptr};
    pid_t pid = -1;
    REQUIRE(::posix_spawnp(&pid, "sh", nullptr, nullptr, argv, environ) == 0);
    io::child c = io::child::adopt(pid).value();
    CHECK(c.id() == pid);
    auto status = co_await c.wait();
    CHECK(status.value().code == 4);
    CHECK(no_children_left());
    // That pid is gone now: nothing to adopt.
    auto gone = io::child::adopt(pid);
    check_failed(gone, std::errc::no_such_process, "pidfd_open");

    // A pid that is not this process's child (a grandchild here): it cannot be waited for, and
    // dropping it must not kill a process that is not ours.
    io::child parent = shell("sleep 5 & echo $!; wait").std_out(io::stdio::pipe).spawn().value();
    std::string line;
    std::array<std::byte, 64> buffer{};
    for (int reads = 0; reads < 100 && line.find('\n') == std::string::npos; ++reads) {
      auto n = co_await parent.std_out().read(buffer);
      if (!n || *n == 0) break;
      line.append(reinterpret_cast<const char*>(buffer.data()), *n);
    }
    const pid_t grandchild = static_cast<pid_t>(std::atoi(line.c_str()));
    REQUIRE(grandchild > 0);
    {
      auto foreign = io::child::adopt(grandchild);
      check_failed(foreign, std::errc::no_child_process, "waitid");
    }
    // The grandchild still runs: the shell still waits for it.
    co_await weft::sleep_for(100ms);
    CHECK_FALSE(parent.try_wait().value().has_value());
    ::kill(grandchild, SIGKILL);  // the shell's `wait` reaps it, then the shell exits
    auto parent_status = co_await weft::with_timeout(2s, parent.wait());
    CHECK(parent_status.value().success());
  }));
  CHECK(no_children_left());
}

TEST_CASE("the child sees only fds 0, 1 and 2", "[process]") {
  // An fd the parent opened without O_CLOEXEC, at a number nothing else uses.
  const int plain = ::open("/dev/null", O_RDONLY);
  REQUIRE(plain >= 0);
  const int high = ::fcntl(plain, F_DUPFD, 100);
  ::close(plain);
  REQUIRE(high >= 100);
  REQUIRE((::fcntl(high, F_GETFD) & FD_CLOEXEC) == 0);
  // What the child lists must be 0, 1, 2 and at most one fd the lister opened itself (the
  // directory it reads, which takes the lowest free number: 3 when nothing leaked).
  auto check_listing = [high](const std::string& listing) {
    std::vector<std::string> fds;
    std::string::size_type start = 0;
    for (auto end = listing.find('\n'); end != std::string::npos;
         start = end + 1, end = listing.find('\n', start)) {
      fds.push_back(listing.substr(start, end - start));
    }
    INFO("listing: " << listing);
    REQUIRE(fds.size() >= 3);
    CHECK(fds[0] == "0");
    CHECK(fds[1] == "1");
    CHECK(fds[2] == "2");
    CHECK(fds.size() <= 4);
    if (fds.size() == 4) CHECK(fds[3] == "3");
    CHECK(std::find(fds.begin(), fds.end(), std::to_string(high)) == fds.end());
  };
  run_main(weft::invoke([&check_listing]() -> task<> {
    // The shell globs its own fd directory.
    auto sh = (co_await shell("for f in /proc/$$/fd/*; do echo ${f##*/}; done").output()).value();
    CHECK(sh.status.success());
    check_listing(sh.out);
    // ls /proc/self/fd (ls itself, not a shell).
    auto ls = (co_await io::command("ls").arg("-1").arg("/proc/self/fd").output()).value();
    CHECK(ls.status.success());
    check_listing(ls.out);
    // With every stream piped and a stdin from /dev/null, and from a child with cwd set.
    auto piped = (co_await io::command("ls")
                      .arg("-1")
                      .arg("/proc/self/fd")
                      .std_in(io::stdio::pipe)
                      .cwd("/")
                      .output())
                     .value();
    check_listing(piped.out);
  }));
  ::close(high);
}

TEST_CASE("spawn and wait on every executor mode", "[process]") {
  const weft::run_options modes[] = {
      {weft::mode::cooperative, 1}, {weft::mode::multi_thread, 2}, {weft::mode::single_lock, 2}};
  for (const weft::run_options& options : modes) {
    INFO("mode " << weft::to_string(options.mode));
    const int sum = weft::run(options, spawn_and_wait_everywhere());
    CHECK(sum == 36 + SIGTERM);
    CHECK(no_children_left());
  }
}
