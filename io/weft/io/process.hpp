// weft: spawning programs as child processes, with async pipes and a pidfd wait.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <weft/io/fd.hpp>
#include <weft/io/pipe.hpp>
#include <weft/io/result.hpp>
#include <weft/task.hpp>

namespace weft::io {

/// What one of a child's standard streams is connected to.
enum class stdio {
  inherit,  ///< the parent's own stream (the default)
  null,     ///< /dev/null
  pipe,     ///< a pipe whose other end the parent gets as an async stream on the ring
};

/// How a child process ended: an exit code, or the signal that killed it.
/// A plain value type (thread-safe to copy).
struct exit_status {
  int code = -1;             ///< the exit code when `exited()`, otherwise -1
  int signal = 0;            ///< the signal that killed the child when `signaled()`, otherwise 0
  bool core_dumped = false;  ///< the signal left a core dump

  /// The child exited (with `code`).
  bool exited() const noexcept { return signal == 0; }
  /// A signal killed the child (`signal`).
  bool signaled() const noexcept { return signal != 0; }
  /// Exited with code 0.
  bool success() const noexcept { return signal == 0 && code == 0; }
  /// "exit code 3", or "killed by signal 9 (SIGKILL)".
  std::string describe() const;
};

/// The name of a signal, such as "SIGKILL"; "signal 77" for a number without one.
std::string signal_name(int signal);

/// What `output()` collects: the exit status and everything the child wrote.
struct process_output {
  /// How the child ended.
  exit_status status;
  std::string out;  ///< stdout, when it was piped (otherwise empty)
  std::string err;  ///< stderr, when it was piped (otherwise empty)
};

class child;

/// Describes a program to start: argv, environment, working directory and standard streams.
/// A builder: every setter returns `*this`. `spawn()` may be called several times, each call
/// starting a new child. Not thread-safe (a plain value, used by one thread at a time).
///
/// The program is searched in the parent's PATH when it contains no '/' (as execvp does).
/// Children start with an empty signal mask and SIGPIPE and SIGXFSZ at their default action,
/// whatever the parent blocked or ignored (weft ignores SIGPIPE; a `signal_set` blocks signals),
/// and they see no file descriptor but 0, 1 and 2: every other fd is closed in the child, even
/// one the parent opened without O_CLOEXEC.
class command {
 public:
  /// A command running `program` with no arguments (argv[0] is `program`).
  explicit command(std::string program);

  /// Appends one argument.
  command& arg(std::string value);
  /// Appends several arguments.
  command& args(std::initializer_list<std::string_view> values);
  /// Appends every element of `values`, a range of strings or string views.
  template <class Range>
  command& args(const Range& values) {
    for (const auto& v : values) arg(std::string(v));
    return *this;
  }
  /// Sets `key=value` in the child's environment (replacing an inherited value).
  command& env(std::string key, std::string value);
  /// Removes `key` from the child's environment.
  command& env_remove(std::string key);
  /// Starts the child's environment empty (variables set with `env` afterwards still apply).
  command& env_clear();
  /// Runs the child in `directory`. A directory that does not exist fails `spawn()` ("chdir").
  command& cwd(std::string directory);
  /// Connects the child's stdin. Default: `stdio::inherit`.
  command& std_in(stdio how) noexcept;
  /// Connects the child's stdout. Default: `stdio::inherit`.
  command& std_out(stdio how) noexcept;
  /// Connects the child's stderr. Default: `stdio::inherit`.
  command& std_err(stdio how) noexcept;
  /// Passes the parent's `fd` to the child as fd 3 (the first call), 4 (the second)... like
  /// systemd's socket activation: the child gets it open (without FD_CLOEXEC) whatever flags the
  /// parent's fd has. `fd` must stay open until `spawn()` returns.
  command& pass_fd(int fd);

  /// Starts the child (posix_spawn, then pidfd_open). The call itself does not wait for the
  /// child to run, only for the exec to succeed or fail, so a program that cannot run is an
  /// error here, not a child that exits 127.
  /// Errors: "spawn" with the exec's error (ENOENT: no such program, EACCES: not executable,
  /// ENOEXEC...), "chdir" (no such directory), "pipe2" (EMFILE...), "pidfd_open" (a kernel
  /// before 5.3, or SIGCHLD set to SIG_IGN so the kernel reaped the child already).
  /// Works from any thread, inside or outside an executor.
  result<child> spawn() const;

  /// Starts the child with stdout and stderr piped (and stdin at /dev/null unless set), reads
  /// both to the end while waiting for it, and gives everything with the exit status
  /// (Rust's `Command::output`). Errors: those of `spawn()`, then of the reads and the wait.
  /// Needs a running executor.
  task<result<process_output>> output() const;

  /// The program given to the constructor (argv[0]).
  const std::string& program() const noexcept { return argv_.front(); }

 private:
  std::vector<std::string> argv_;
  std::vector<std::pair<std::string, std::optional<std::string>>> env_changes_;
  bool env_clear_ = false;
  std::optional<std::string> cwd_;
  stdio in_ = stdio::inherit;
  stdio out_ = stdio::inherit;
  stdio err_ = stdio::inherit;
  std::vector<int> passed_fds_;
};

/// A running (or finished) child process, owned: its pidfd, and the parent's ends of the pipes
/// asked for. Move-only.
///
/// Waiting goes through the pidfd: `wait()` polls it on the ring and reaps the child with
/// waitid(P_PIDFD), so weft installs no SIGCHLD handler and never polls in a loop, and a
/// signal sent with `kill()` can never reach a recycled pid.
///
/// Destruction: a child that has not been reaped yet is killed with SIGKILL and reaped before
/// the destructor returns (it blocks for as long as the kernel takes to end it, usually
/// microseconds), so a forgotten child leaves neither a zombie nor an orphan behind. (A child
/// that refuses the signal, having exec'ed a setuid program, is left running rather than
/// waited for.) Await
/// `wait()` first to let a child finish on its own.
///
/// Thread-safety: one task at a time uses a child (wait, kill, output); the pipes may be used
/// by other tasks meanwhile (one reader or writer per pipe). A child may be awaited on any
/// executor mode, and its I/O runs on the ring of the thread that awaits.
class child {
 public:
  child() noexcept = default;
  /// Takes over `other`'s process and pipes; `other` becomes empty.
  child(child&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        pidfd_(std::move(other.pidfd_)),
        in_(std::move(other.in_)),
        out_(std::move(other.out_)),
        err_(std::move(other.err_)),
        status_(std::exchange(other.status_, std::nullopt)) {}
  /// Kills and reaps the process this object held, if not reaped yet (as the destructor does),
  /// then takes over `other`'s.
  child& operator=(child&& other) noexcept;
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child();

  /// Takes charge of `pid`, a child this process started itself (with fork, say): opens its
  /// pidfd, after which it is waited, killed and reaped as a spawned child. Errors:
  /// "pidfd_open" (ESRCH: no such process), "waitid" (ECHILD: not a child of this process, so
  /// not ours to wait for or kill).
  static result<child> adopt(pid_t pid);

  /// The process id (valid until reaped; prefer `kill()` to signalling this number).
  pid_t id() const noexcept { return pid_; }
  /// The pidfd (-1 for an empty child).
  int pidfd() const noexcept { return pidfd_.get(); }

  /// The parent's end of the child's stdin; empty (false) when stdin is not piped or the
  /// writer was moved out. Move it out to hand it to another task.
  pipe_writer& std_in() noexcept { return in_; }
  /// The parent's end of the child's stdout; empty (false) when not piped or moved out.
  pipe_reader& std_out() noexcept { return out_; }
  /// The parent's end of the child's stderr; empty (false) when not piped or moved out.
  pipe_reader& std_err() noexcept { return err_; }

  /// Waits for the child to end and reaps it; gives its exit status. Once reaped, further
  /// calls give the same status at once. Cancellable (`with_timeout(1s, c.wait())`): a
  /// cancelled wait throws `errc::cancelled` (or `with_timeout`'s `errc::timed_out`) and leaves
  /// the child running and waitable; nothing is killed unless you call `kill()`.
  /// Errors: "waitid", "poll pidfd". Needs a running executor.
  task<result<exit_status>> wait();

  /// The exit status if the child has ended (reaping it), nullopt while it runs. Never blocks.
  /// Errors: "waitid".
  result<std::optional<exit_status>> try_wait();

  /// Sends `signal` through the pidfd (pidfd_send_signal). Errors: "kill" (ESRCH once the child
  /// has been reaped; sending to a child that ended but is not reaped yet succeeds).
  result<void> kill(int signal = SIGKILL) const;

  /// Closes stdin if piped (so the child sees end of file), reads piped stdout and stderr to the
  /// end concurrently while waiting for the child, and gives all three. A child writing more
  /// than a pipe holds never deadlocks against it. Errors: "read", then those of `wait()`.
  task<result<process_output>> output();

  /// True once the child was reaped by `wait`, `try_wait` or `output`.
  bool reaped() const noexcept { return status_.has_value(); }

 private:
  friend class command;
  child(pid_t pid, io::fd pidfd) noexcept : pid_(pid), pidfd_(std::move(pidfd)) {}
  void kill_and_reap() noexcept;

  pid_t pid_ = -1;
  io::fd pidfd_;
  pipe_writer in_;
  pipe_reader out_;
  pipe_reader err_;
  std::optional<exit_status> status_;
};

}  // namespace weft::io
