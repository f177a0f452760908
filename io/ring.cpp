#include <weft/io/ring.hpp>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <fstream>
#include <string>
#include <system_error>

namespace weft::io {
namespace {

std::atomic<unsigned> live_rings{0};

std::string read_sysctl(const char* path) {
  std::ifstream in(path);
  std::string value;
  if (in) in >> value;
  return value;
}

std::string explain(int err) {
  // std::system_error appends strerror(err) to this text, so it names only the likely cause.
  std::string why = "cannot create an io_uring ring";
  const std::string disabled = read_sysctl("/proc/sys/kernel/io_uring_disabled");
  switch (err) {
    case ENOSYS:
      why +=
          " (this kernel has no io_uring, or a seccomp filter hides io_uring_setup; weft needs "
          "Linux >= 5.11)";
      break;
    case EPERM:
    case EACCES:
      if (!disabled.empty() && disabled != "0") {
        why += " (io_uring is disabled by sysctl kernel.io_uring_disabled=" + disabled +
               "; set it to 0, or run as a member of kernel.io_uring_group)";
      } else {
        why +=
            " (io_uring_setup was refused: a seccomp or container policy, such as Docker's "
            "default profile, blocks it)";
      }
      break;
    case ENOMEM: {
      rlimit lim{};
      getrlimit(RLIMIT_MEMLOCK, &lim);
      why += " (not enough locked memory: RLIMIT_MEMLOCK is " +
             (lim.rlim_cur == RLIM_INFINITY ? std::string("unlimited")
                                            : std::to_string(lim.rlim_cur / 1024) + " KiB") +
             "; raise it with `ulimit -l` or limits.conf, or use a kernel >= 5.12)";
      break;
    }
    case EMFILE:
    case ENFILE: why += " (out of file descriptors)"; break;
    default: break;
  }
  return why;
}

}  // namespace

ring::ring(unsigned entries) {
  // A ring belongs to one thread, so the kernel may run completion work only when that thread
  // asks for completions (DEFER_TASKRUN, Linux 6.1), instead of interrupting it with
  // task-work IPIs: fewer context switches per operation. Older kernels fall back to
  // COOP_TASKRUN (5.19), then to no flag.
  const unsigned attempts[] = {
      // Disabled until enable(): the thread that enables it becomes its single issuer, so an
      // executor may be built on one thread and run on another.
      // TASKRUN_FLAG: the kernel flags pending completion work in the SQ ring, so a busy
      // loop's non-blocking poll enters the kernel only when there is something to collect.
      IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SINGLE_ISSUER |
          IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_R_DISABLED,
      IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_SINGLE_ISSUER |
          IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
      IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP | IORING_SETUP_COOP_TASKRUN |
          IORING_SETUP_TASKRUN_FLAG,
      IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP,
      0,  // kernels before 5.5 lack CQSIZE; the feature check below explains what is missing
  };
  io_uring_params params{};
  int rc = -EINVAL;
  for (unsigned flags : attempts) {
    params = io_uring_params{};
    params.flags = flags;
    params.cq_entries = entries * 4;
    rc = io_uring_queue_init_params(entries, &ring_, &params);
    if (rc != -EINVAL) break;
  }
  defer_taskrun_ = rc == 0 && (params.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
  taskrun_flag_ = rc == 0 && (params.flags & IORING_SETUP_TASKRUN_FLAG) != 0;
  disabled_ = rc == 0 && (params.flags & IORING_SETUP_R_DISABLED) != 0;
  if (rc < 0) throw std::system_error(-rc, std::generic_category(), explain(-rc));
  if ((params.features & IORING_FEAT_EXT_ARG) == 0) {
    io_uring_queue_exit(&ring_);
    throw std::system_error(ENOSYS, std::generic_category(),
                            "cannot use this kernel's io_uring: it lacks IORING_FEAT_EXT_ARG "
                            "(weft needs Linux >= 5.11 for submit-and-wait with a timeout)");
  }
  // acq_rel, paired with the destructor's: the kernel can hand this ring the addresses of one
  // another thread just unmapped, and liburing unmaps with a raw system call that
  // ThreadSanitizer does not see. Both sides updating one counter orders that thread's last
  // writes to the old mapping before this thread's first to the new one (no false race).
  live_rings.fetch_add(1, std::memory_order_acq_rel);
}

unsigned ring::live_count() noexcept {
  return live_rings.load(std::memory_order_relaxed);
}

void ring::enable() {
  if (!disabled_) return;
  // liburing 2.3 declares io_uring_enable_rings but its shared library does not export it:
  // the system call itself.
  if (::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) <
      0) {
    throw std::system_error(errno, std::generic_category(), "weft: enabling the io_uring");
  }
  disabled_ = false;
}

ring::~ring() {
  live_rings.fetch_sub(1, std::memory_order_acq_rel);  // before the unmapping: see ring()
  io_uring_queue_exit(&ring_);
}

}  // namespace weft::io
