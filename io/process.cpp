#include <weft/io/process.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <weft/io/socket.hpp>
#include <weft/when.hpp>

extern char** environ;

namespace weft::io {
namespace {

io_error os_error(int err, const char* operation) noexcept {
  return {std::error_code(err, std::generic_category()), operation};
}

int pidfd_open(pid_t pid) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

exit_status status_from(const siginfo_t& info) noexcept {
  exit_status s;
  if (info.si_code == CLD_EXITED) {
    s.code = info.si_status;
  } else {
    s.signal = info.si_status;
    s.core_dumped = info.si_code == CLD_DUMPED;
  }
  return s;
}

// Reaps the child behind `pidfd` if it has ended. nullopt while it runs.
result<std::optional<exit_status>> reap(int pidfd, bool block) noexcept {
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                  WEXITED | (block ? 0 : WNOHANG));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return os_error(errno, "waitid");
  if (info.si_pid == 0) return std::optional<exit_status>();  // WNOHANG: still running
  return std::optional<exit_status>(status_from(info));
}

// A pipe whose child end is not one of 0, 1, 2, so that dup2 onto the standard stream always
// makes a new, inheritable descriptor (a parent with a closed stdin gets fd 0 from pipe2).
result<std::pair<io::fd, io::fd>> make_spawn_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return os_error(errno, "pipe2");
  io::fd read_end(fds[0]), write_end(fds[1]);
  for (io::fd* end : {&read_end, &write_end}) {
    if (end->get() <= 2) {
      const int moved = ::fcntl(end->get(), F_DUPFD_CLOEXEC, 3);
      if (moved < 0) return os_error(errno, "pipe2");
      *end = io::fd(moved);
    }
  }
  return std::pair(std::move(read_end), std::move(write_end));
}

// RAII for the posix_spawn attribute objects.
struct spawn_setup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  spawn_setup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~spawn_setup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
};

bool same_key(std::string_view entry, std::string_view key) noexcept {
  return entry.size() > key.size() && entry.substr(0, key.size()) == key &&
         entry[key.size()] == '=';
}

// posix_spawn reports a failed chdir with the same errno as a missing program; checking the
// directory first makes the error say which one it was.
std::optional<io_error> check_directory(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return os_error(errno, "chdir");
  if (!S_ISDIR(st.st_mode)) return os_error(ENOTDIR, "chdir");
  return std::nullopt;
}

// The child's standard streams. For a pipe, the parent's end goes to `parent_end` and the
// child's to `child_end` (closed once the child has it).
std::optional<io_error> add_stdio(spawn_setup& setup, const stdio (&how)[3],
                                  io::fd (&parent_end)[3], io::fd (&child_end)[3]) {
  for (int stream = 0; stream < 3; ++stream) {
    if (how[stream] == stdio::pipe) {
      auto p = make_spawn_pipe();
      if (!p) return p.full_error();
      // stdin: the child reads; stdout and stderr: the child writes.
      if (stream == 0) {
        child_end[0] = std::move(p->first);
        parent_end[0] = std::move(p->second);
      } else {
        parent_end[stream] = std::move(p->first);
        child_end[stream] = std::move(p->second);
      }
      posix_spawn_file_actions_adddup2(&setup.actions, child_end[stream].get(), stream);
    } else if (how[stream] == stdio::null) {
      posix_spawn_file_actions_addopen(&setup.actions, stream, "/dev/null",
                                       stream == 0 ? O_RDONLY : O_WRONLY, 0);
    }
  }
  return std::nullopt;
}

// Passed fds go to 3, 4...: first copied above that range (the copies, closed once the child
// has them, go to `copies`), so that no dup2 overwrites a source another one still needs. The
// child gets 0, 1, 2 and the passed fds, nothing else, whatever the parent forgot to mark
// O_CLOEXEC.
std::optional<io_error> add_passed_fds(spawn_setup& setup, const std::vector<int>& fds,
                                       std::vector<io::fd>& copies) {
  const int first_free = 3 + static_cast<int>(fds.size());
  for (int fd : fds) {
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, first_free);
    if (copy < 0) return os_error(errno, "pass_fd");
    copies.emplace_back(copy);
    posix_spawn_file_actions_adddup2(&setup.actions, copy, 3 + static_cast<int>(copies.size()) - 1);
  }
  posix_spawn_file_actions_addclosefrom_np(&setup.actions, first_free);
  return std::nullopt;
}

// The child starts with no signal blocked, and SIGPIPE and SIGXFSZ at their defaults (the
// parent, a weft program, ignores SIGPIPE).
void reset_signals(spawn_setup& setup) noexcept {
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGXFSZ);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  posix_spawnattr_setsigdefault(&setup.attr, &defaults);
  posix_spawnattr_setflags(&setup.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

// The child's environment: the parent's (`environ` itself when unchanged), or none, with the
// changes applied in order (a null value removes the key).
class child_environment {
 public:
  child_environment(
      bool clear, const std::vector<std::pair<std::string, std::optional<std::string>>>& changes) {
    if (!clear && changes.empty()) return;
    if (!clear) {
      for (char** e = environ; e != nullptr && *e != nullptr; ++e) storage_.emplace_back(*e);
    }
    for (const auto& [key, value] : changes) {
      std::erase_if(storage_, [&](const std::string& e) { return same_key(e, key); });
      if (value) storage_.push_back(key + "=" + *value);
    }
    for (std::string& e : storage_) pointers_.push_back(e.data());
    pointers_.push_back(nullptr);
    envp_ = pointers_.data();
  }
  char** envp() const noexcept { return envp_; }

 private:
  std::vector<std::string> storage_;
  std::vector<char*> pointers_;
  char** envp_ = environ;
};

// The pidfd of a child just spawned. Without one there is no safe way to signal or wait: the
// child is killed and reaped by pid, as a last resort.
result<io::fd> open_pidfd(pid_t pid) {
  const int pidfd = pidfd_open(pid);
  if (pidfd < 0) {
    const int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return os_error(err, "pidfd_open");
  }
  ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);  // pidfd_open sets it; kept explicit for old kernels
  return io::fd(pidfd);
}

}  // namespace

std::string signal_name(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  if (abbrev == nullptr) return "signal " + std::to_string(signal);
  return std::string("SIG") + abbrev;
}

std::string exit_status::describe() const {
  if (signaled()) {
    return "killed by signal " + std::to_string(signal) + " (" + signal_name(signal) + ")" +
           (core_dumped ? ", core dumped" : "");
  }
  return "exit code " + std::to_string(code);
}

// ---- command

command::command(std::string program) {
  argv_.push_back(std::move(program));
}

command& command::arg(std::string value) {
  argv_.push_back(std::move(value));
  return *this;
}

command& command::args(std::initializer_list<std::string_view> values) {
  for (std::string_view v : values) argv_.emplace_back(v);
  return *this;
}

command& command::env(std::string key, std::string value) {
  env_changes_.emplace_back(std::move(key), std::move(value));
  return *this;
}

command& command::env_remove(std::string key) {
  env_changes_.emplace_back(std::move(key), std::nullopt);
  return *this;
}

command& command::env_clear() {
  env_clear_ = true;
  env_changes_.clear();
  return *this;
}

command& command::cwd(std::string directory) {
  cwd_ = std::move(directory);
  return *this;
}

command& command::std_in(stdio how) noexcept {
  in_ = how;
  return *this;
}
command& command::std_out(stdio how) noexcept {
  out_ = how;
  return *this;
}
command& command::std_err(stdio how) noexcept {
  err_ = how;
  return *this;
}
command& command::pass_fd(int fd) {
  passed_fds_.push_back(fd);
  return *this;
}

result<child> command::spawn() const {
  if (cwd_) {
    if (auto e = check_directory(*cwd_)) return *e;
  }
  spawn_setup setup;
  io::fd parent_end[3];
  io::fd child_end[3];
  const stdio how[3] = {in_, out_, err_};
  if (auto e = add_stdio(setup, how, parent_end, child_end)) return *e;
  std::vector<io::fd> passed;
  if (auto e = add_passed_fds(setup, passed_fds_, passed)) return *e;
  if (cwd_) posix_spawn_file_actions_addchdir_np(&setup.actions, cwd_->c_str());
  reset_signals(setup);

  std::vector<char*> argv;
  argv.reserve(argv_.size() + 1);
  for (const std::string& a : argv_) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const child_environment env(env_clear_, env_changes_);

  pid_t pid = -1;
  // glibc's posix_spawn runs the child with CLONE_VFORK and reports a failed exec (or a failed
  // file action) as its return value, so exec errors surface here.
  const int rc =
      ::posix_spawnp(&pid, argv[0], &setup.actions, &setup.attr, argv.data(), env.envp());
  if (rc != 0) return os_error(rc, "spawn");
  auto pidfd = open_pidfd(pid);
  if (!pidfd) return pidfd.full_error();

  child c(pid, std::move(*pidfd));
  c.in_ = pipe_writer(std::move(parent_end[0]));
  c.out_ = pipe_reader(std::move(parent_end[1]));
  c.err_ = pipe_reader(std::move(parent_end[2]));
  return c;
}

namespace {
// Takes the command by value: the task may run after the caller's command is gone.
task<result<process_output>> spawn_and_collect(command piped) {
  result<child> c = piped.spawn();
  if (!c) co_return c.full_error();
  co_return co_await c->output();
}
}  // namespace

task<result<process_output>> command::output() const {
  command piped = *this;
  if (piped.in_ == stdio::inherit) piped.in_ = stdio::null;
  piped.out_ = stdio::pipe;
  piped.err_ = stdio::pipe;
  return spawn_and_collect(std::move(piped));
}

// ---- child

result<child> child::adopt(pid_t pid) {
  io::fd pidfd(pidfd_open(pid));
  if (!pidfd) return os_error(errno, "pidfd_open");
  // Only a child of ours can be reaped by us: check without reaping (WNOWAIT).
  siginfo_t info{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd.get()), &info,
               WEXITED | WNOHANG | WNOWAIT) != 0) {
    return os_error(errno, "waitid");
  }
  return child(pid, std::move(pidfd));
}

child& child::operator=(child&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    in_ = std::move(other.in_);
    out_ = std::move(other.out_);
    err_ = std::move(other.err_);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

child::~child() {
  kill_and_reap();
}

void child::kill_and_reap() noexcept {
  if (!pidfd_ || status_) return;
  auto ended = reap(pidfd_.get(), false);
  if (ended && *ended) {
    status_ = **ended;
    return;
  }
  // waitid failed (ECHILD): not this process's child (an adopted pid that was not one), or
  // reaped elsewhere. Nothing to reap, and not ours to kill.
  if (!ended) return;
  // A child that exec'ed a setuid program may refuse our signal (EPERM): leave it unreaped
  // rather than block this thread until it ends on its own.
  if (!kill(SIGKILL)) return;
  auto r = reap(pidfd_.get(), true);
  if (r && *r) status_ = **r;
}

result<std::optional<exit_status>> child::try_wait() {
  if (status_) return status_;
  if (!pidfd_) return os_error(ECHILD, "waitid");
  auto r = reap(pidfd_.get(), false);
  if (r && *r) status_ = **r;
  return r;
}

task<result<exit_status>> child::wait() {
  for (;;) {
    result<std::optional<exit_status>> r = try_wait();
    if (!r) co_return r.full_error();
    if (*r) co_return **r;
    // A pidfd becomes readable when the process ends (Linux 5.3; waitid P_PIDFD: 5.4).
    result<unsigned> ready = co_await poll(pidfd_.get(), POLLIN);
    if (!ready) co_return io_error{ready.error(), "poll pidfd"};
  }
}

result<void> child::kill(int signal) const {
  if (!pidfd_) return os_error(ESRCH, "kill");
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal, nullptr, 0) != 0) {
    return os_error(errno, "kill");
  }
  return {};
}

namespace {
task<result<std::size_t>> drain(pipe_reader& pipe, std::string& into) {
  if (!pipe) co_return std::size_t{0};
  co_return co_await pipe.read_to_end(into);
}
}  // namespace

task<result<process_output>> child::output() {
  in_ = pipe_writer();  // closes stdin: the child sees end of file
  process_output collected;
  auto [out, err, status] =
      co_await when_all(drain(out_, collected.out), drain(err_, collected.err), wait());
  out_ = pipe_reader();
  err_ = pipe_reader();
  if (!out) co_return out.full_error();
  if (!err) co_return err.full_error();
  if (!status) co_return status.full_error();
  collected.status = *status;
  co_return collected;
}

}  // namespace weft::io
