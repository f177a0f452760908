// wake_bench: how cheaply can one thread wake another that is parked in io_uring_enter on its own
// ring? A two-thread ping-pong, each thread parked in its ring (a weft::io::ring:
// SINGLE_ISSUER | DEFER_TASKRUN, R_DISABLED, enabled by the thread that uses it), each waking the
// other, for N round trips, per method:
//
//   eventfd        an eventfd read kept armed in the sleeper's ring; the sender write(2)s it
//                  (what weft's reactor::wake does today)
//   msg_ring       IORING_OP_MSG_RING submitted on the sender's own ring to the sleeper's ring fd
//                  (IOSQE_CQE_SKIP_SUCCESS: no CQE on the sender's ring unless it fails)
//   msg_ring_sync  the same message sent without a source ring: io_uring_register(-1,
//                  IORING_REGISTER_SEND_MSG_RING, sqe) (Linux 6.13): what a thread without a ring
//                  could use instead of an eventfd
//   futex          reference floor: the sleeper waits in FUTEX_WAIT, the sender FUTEX_WAKEs
//   condvar        reference: std::mutex + std::condition_variable
//
// Prints, per method and per placement (unpinned; pinned to two different CPUs), the median over
// REPS interleaved repetitions of round_trip_ns (wall time / N on the initiating thread) and
// sender_ns (mean time in the waking call, both threads, timer overhead subtracted).
//
// Usage: wake_bench [round_trips=20000] [reps=5]

#include <liburing.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <weft/io/ring.hpp>

namespace {

#ifndef IORING_REGISTER_SEND_MSG_RING
constexpr unsigned IORING_REGISTER_SEND_MSG_RING = 31;  // Linux 6.13; liburing 2.3 predates it
#endif

constexpr std::uint64_t wake_tag = 0x57414b45;  // user_data of the wake-up CQE
constexpr std::uint64_t send_tag = 0x53454e44;  // user_data of a MSG_RING's own (error) CQE

[[noreturn]] void die(int err, const char* what) {
  throw std::system_error(err, std::generic_category(), what);
}

using clk = std::chrono::steady_clock;

std::int64_t ns_between(clk::time_point a, clk::time_point b) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count();
}

// ---- RAII ------------------------------------------------------------------------------------

class unique_fd {
 public:
  explicit unique_fd(int fd = -1) : fd_(fd) {}
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// weft's own ring (weft::io::ring: DEFER_TASKRUN when the kernel has it, disabled until the
// owning thread enables it), with what the methods below need to park in it and send from it.
class ring {
 public:
  explicit ring(unsigned entries = 64) : ring_(entries) {}

  // On the thread that will use the ring (its single issuer).
  void enable() { ring_.enable(); }

  io_uring* get() { return ring_.get(); }
  int fd() { return ring_.get()->ring_fd; }
  bool defer_taskrun() const { return ring_.defer_taskrun(); }

  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(get());
    if (s == nullptr) die(EBUSY, "io_uring_get_sqe: submission queue full");
    return s;
  }

  // Submits what is queued and blocks until a wake-up CQE arrives (park).
  void wait_for_wake() {
    for (;;) {
      int rc = io_uring_submit_and_wait(get(), 1);
      if (rc < 0 && rc != -EINTR) die(-rc, "io_uring_submit_and_wait");
      io_uring_cqe* cqe = nullptr;
      bool woken = false;
      while (io_uring_peek_cqe(get(), &cqe) == 0) {
        const std::uint64_t tag = cqe->user_data;
        const int res = cqe->res;
        io_uring_cqe_seen(get(), cqe);
        if (tag == wake_tag) {
          if (res < 0) die(-res, "wake-up CQE");
          woken = true;
        } else if (tag == send_tag) {
          die(-res, "MSG_RING on the sender's ring");
        }
      }
      if (woken) return;
    }
  }

 private:
  weft::io::ring ring_;
};

// ---- methods ---------------------------------------------------------------------------------
// Each method provides, per side (0 and 1): setup(side) on that side's thread, park(side), and
// wake(side) which wakes the *other* side.

struct eventfd_method {
  static constexpr const char* name = "eventfd";
  ring rings[2];
  unique_fd efd[2]{unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
                   unique_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))};
  std::uint64_t buf[2]{};

  eventfd_method() {
    if (efd[0].get() < 0 || efd[1].get() < 0) die(errno, "eventfd");
  }
  void arm(int side) {
    io_uring_sqe* s = rings[side].sqe();
    io_uring_prep_read(s, efd[side].get(), &buf[side], sizeof buf[side], 0);
    io_uring_sqe_set_data64(s, wake_tag);
  }
  // The read is queued now and reaches the kernel with the next park's io_uring_enter, as in
  // weft's reactor (the eventfd counter keeps a wake-up that comes first).
  void setup(int side) {
    rings[side].enable();
    arm(side);
  }
  void park(int side) {
    rings[side].wait_for_wake();
    arm(side);
  }
  void wake(int side) {
    const std::uint64_t one = 1;
    if (::write(efd[1 - side].get(), &one, sizeof one) < 0 && errno != EAGAIN) die(errno, "write");
  }
};

// The message methods: each side parks in its own ring until a message (a CQE) arrives.
struct message_parking {
  ring rings[2];

  void setup(int side) { rings[side].enable(); }
  void park(int side) { rings[side].wait_for_wake(); }
};

struct msg_ring_method : message_parking {
  static constexpr const char* name = "msg_ring";

  void wake(int side) {
    io_uring_sqe* s = rings[side].sqe();
    io_uring_prep_msg_ring(s, rings[1 - side].fd(), 0, wake_tag, 0);
    io_uring_sqe_set_data64(s, send_tag);
    s->flags |= IOSQE_CQE_SKIP_SUCCESS;
    int rc = io_uring_submit(rings[side].get());
    if (rc != 1) die(rc < 0 ? -rc : EIO, "io_uring_submit(MSG_RING)");
  }
};

int send_msg_ring_sync(int target_fd, std::uint64_t user_data) {
  io_uring_sqe s{};
  io_uring_prep_msg_ring(&s, target_fd, 0, user_data, 0);
  long rc = ::syscall(__NR_io_uring_register, -1, IORING_REGISTER_SEND_MSG_RING, &s, 1);
  return rc < 0 ? -errno : 0;
}

struct msg_ring_sync_method : message_parking {
  static constexpr const char* name = "msg_ring_sync";

  void wake(int side) {
    int rc = send_msg_ring_sync(rings[1 - side].fd(), wake_tag);
    if (rc < 0) die(-rc, "IORING_REGISTER_SEND_MSG_RING");
  }
};

struct futex_method {
  static constexpr const char* name = "futex";
  std::atomic<std::uint32_t> word[2]{0, 0};

  void setup(int) {}
  void park(int side) {
    while (word[side].exchange(0, std::memory_order_acquire) == 0) {
      ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word[side]), FUTEX_WAIT_PRIVATE, 0,
                nullptr, nullptr, 0);
    }
  }
  void wake(int side) {
    word[1 - side].store(1, std::memory_order_release);
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word[1 - side]), FUTEX_WAKE_PRIVATE, 1,
              nullptr, nullptr, 0);
  }
};
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

struct condvar_method {
  static constexpr const char* name = "condvar";
  struct slot {
    std::mutex m;
    std::condition_variable cv;
    bool flag = false;
  } slots[2];

  void setup(int) {}
  void park(int side) {
    std::unique_lock lock(slots[side].m);
    slots[side].cv.wait(lock, [&] { return slots[side].flag; });
    slots[side].flag = false;
  }
  void wake(int side) {
    slot& peer = slots[1 - side];
    {
      std::lock_guard lock(peer.m);
      peer.flag = true;
    }
    peer.cv.notify_one();
  }
};

// ---- harness ---------------------------------------------------------------------------------

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

void pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  if (rc != 0) die(rc, "pthread_setaffinity_np");
}

std::int64_t timer_overhead_ns() {
  std::vector<std::int64_t> v;
  for (int i = 0; i < 10001; ++i) {
    auto a = clk::now();
    auto b = clk::now();
    v.push_back(ns_between(a, b));
  }
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

struct sample {
  double round_trip_ns;
  double sender_ns;
};

template <class Method>
sample run_once(int round_trips, const int* cpus, std::int64_t timer_ns) {
  Method m;
  constexpr int warmup = 500;
  std::atomic<int> ready{0};
  std::int64_t send_total[2]{};
  std::int64_t elapsed = 0;

  auto body = [&](int side) {
    try {
      if (cpus != nullptr) pin_self(cpus[side]);
      m.setup(side);
      ready.fetch_add(1);
      while (ready.load() < 2) std::this_thread::yield();
      std::int64_t spent = 0;
      auto timed_wake = [&] {
        auto a = clk::now();
        m.wake(side);
        spent += ns_between(a, clk::now());
      };
      clk::time_point start;
      for (int i = 0; i < warmup + round_trips; ++i) {
        if (i == warmup) {
          spent = 0;
          start = clk::now();
        }
        if (side == 0) {
          timed_wake();
          m.park(side);
        } else {
          m.park(side);
          timed_wake();
        }
      }
      if (side == 0) elapsed = ns_between(start, clk::now());
      send_total[side] = spent;
    } catch (const std::exception& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "wake_bench: %s side %d: %s\n", Method::name, side, e.what());
      std::_Exit(1);  // the peer is parked forever; nothing to unwind into
    }
  };
  std::thread t1(body, 1);
  body(0);
  t1.join();
  const double wakes = 2.0 * round_trips;
  return {static_cast<double>(elapsed) / round_trips,
          std::max(0.0, static_cast<double>(send_total[0] + send_total[1]) / wakes -
                            static_cast<double>(timer_ns))};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Does a MSG_RING CQE wake a thread blocked in io_uring_enter(GETEVENTS, min_complete=1) on a
// DEFER_TASKRUN ring? The sleeper waits with a 2 s timeout; the message is sent 50 ms after it
// parked, so a wake-up well under 2 s means the message woke it (and did not merely show up once
// the timeout expired).
void check_msg_ring_wakes(bool sync) {
  ring target;
  std::atomic<bool> parked{false};
  std::atomic<std::int64_t> sent_at{0};
  std::int64_t woke_after_ns = -1;
  std::uint64_t got = 0;
  std::thread sleeper([&] {
    target.enable();
    parked = true;
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec ts{2, 0};
    int rc = io_uring_wait_cqe_timeout(target.get(), &cqe, &ts);
    const auto now = clk::now().time_since_epoch().count();
    if (rc == 0) {
      got = cqe->user_data;
      io_uring_cqe_seen(target.get(), cqe);
      woke_after_ns = now - sent_at.load();
    }
  });
  while (!parked) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  int rc = 0;
  if (sync) {
    sent_at = clk::now().time_since_epoch().count();
    rc = send_msg_ring_sync(target.fd(), wake_tag);
  } else {
    ring source;
    source.enable();
    io_uring_sqe* s = source.sqe();
    io_uring_prep_msg_ring(s, target.fd(), 0, wake_tag, 0);
    sent_at = clk::now().time_since_epoch().count();
    rc = io_uring_submit_and_wait(source.get(), 1);
    io_uring_cqe* cqe = nullptr;
    if (rc >= 0 && io_uring_peek_cqe(source.get(), &cqe) == 0) {
      rc = cqe->res;
      io_uring_cqe_seen(source.get(), cqe);
    }
  }
  sleeper.join();
  const bool ok = rc >= 0 && got == wake_tag && woke_after_ns >= 0 && woke_after_ns < 500'000'000;
  std::printf("check %s target_defer_taskrun=%d send_rc=%d woken_by_message=%s wake_us=%.1f\n",
              sync ? "msg_ring_sync" : "msg_ring", target.defer_taskrun() ? 1 : 0, rc,
              ok ? "yes" : "no", woke_after_ns / 1000.0);
}

}  // namespace

int main(int argc, char** argv) {
  const int round_trips = argc > 1 ? std::atoi(argv[1]) : 20000;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  if (round_trips <= 0 || reps <= 0) {
    std::fprintf(stderr, "usage: %s [round_trips>0] [reps>0]\n", argv[0]);
    return 2;
  }
  utsname u{};
  uname(&u);
  const std::int64_t timer_ns = timer_overhead_ns();
  const std::vector<int> cpus = allowed_cpus();
  std::printf("kernel=%s cpus=%zu round_trips=%d reps=%d timer_overhead_ns=%lld (subtracted)\n",
              u.release, cpus.size(), round_trips, reps, static_cast<long long>(timer_ns));
  check_msg_ring_wakes(false);
  check_msg_ring_wakes(true);
  std::fflush(stdout);

  struct entry {
    const char* name;
    sample (*run)(int, const int*, std::int64_t);
    std::vector<double> rt, send;
  };
  std::vector<entry> methods = {
      {eventfd_method::name, &run_once<eventfd_method>, {}, {}},
      {msg_ring_method::name, &run_once<msg_ring_method>, {}, {}},
      {msg_ring_sync_method::name, &run_once<msg_ring_sync_method>, {}, {}},
      {futex_method::name, &run_once<futex_method>, {}, {}},
      {condvar_method::name, &run_once<condvar_method>, {}, {}},
  };

  std::vector<std::pair<std::string, const int*>> placements = {{"none", nullptr}};
  int pair[2]{};
  if (cpus.size() >= 2) {
    pair[0] = cpus[0];
    pair[1] = cpus[1];
    placements.push_back({std::to_string(pair[0]) + "," + std::to_string(pair[1]), pair});
  }
  for (const auto& [label, pins] : placements) {
    for (entry& e : methods) e.rt.clear(), e.send.clear();
    for (int r = 0; r < reps; ++r) {  // interleaved: a b c ... a b c ...
      for (entry& e : methods) {
        sample s = e.run(round_trips, pins, timer_ns);
        e.rt.push_back(s.round_trip_ns);
        e.send.push_back(s.sender_ns);
      }
    }
    for (entry& e : methods) {
      std::printf("method=%s pin=%s round_trip_ns=%.0f sender_ns=%.0f (rt min..max %.0f..%.0f)\n",
                  e.name, label.c_str(), median(e.rt), median(e.send),
                  *std::min_element(e.rt.begin(), e.rt.end()),
                  *std::max_element(e.rt.begin(), e.rt.end()));
    }
    std::fflush(stdout);
  }
  return 0;
}
