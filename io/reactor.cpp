#include <weft/io/reactor.hpp>

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <system_error>

#include "buffer_ring.hpp"
#include "fault_hook.hpp"

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define WEFT_VALGRIND 1
#endif

namespace weft::io {
namespace {

#ifdef WEFT_VALGRIND
// Memcheck sees system calls, not io_uring: memory that the kernel fills when an operation
// completes (a read or recv buffer, a recvmsg's name, control data and flags, a statx result)
// would look uninitialised to it, and every parser of received bytes would be reported. So,
// under Valgrind only, the SQEs about to be submitted declare what the kernel may write. (The
// declaration comes at submission, so a read of the buffer before the completion goes unseen:
// Memcheck's precision for io_uring I/O is the operation, not the byte.)
void declare_kernel_writes(const io_uring_sqe& sqe) noexcept {
  auto* addr = reinterpret_cast<void*>(sqe.addr);
  switch (sqe.opcode) {
    case IORING_OP_READ:
    case IORING_OP_RECV:
      if (addr != nullptr) VALGRIND_MAKE_MEM_DEFINED(addr, sqe.len);
      break;
    case IORING_OP_RECVMSG: {
      auto* msg = static_cast<msghdr*>(addr);
      if (msg == nullptr) break;
      VALGRIND_MAKE_MEM_DEFINED(msg, sizeof *msg);  // namelen, controllen, flags are written
      for (std::size_t i = 0; msg->msg_iov != nullptr && i < msg->msg_iovlen; ++i) {
        VALGRIND_MAKE_MEM_DEFINED(msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
      }
      if (msg->msg_name != nullptr) VALGRIND_MAKE_MEM_DEFINED(msg->msg_name, msg->msg_namelen);
      if (msg->msg_control != nullptr) {
        VALGRIND_MAKE_MEM_DEFINED(msg->msg_control, msg->msg_controllen);
      }
      break;
    }
    case IORING_OP_STATX:
      if (sqe.off != 0) VALGRIND_MAKE_MEM_DEFINED(reinterpret_cast<void*>(sqe.off), 256);
      break;
    default: break;
  }
}

bool under_valgrind() noexcept {
  return RUNNING_ON_VALGRIND != 0;
}
#else
void declare_kernel_writes(const io_uring_sqe&) noexcept {}
bool under_valgrind() noexcept {
  return false;
}
#endif

// Valgrind 3.19 runs one thread at a time and does not let another run while one waits in
// io_uring_enter (liburing issue #657), so a thread parked in its ring until another thread
// wakes it would wait forever. Under Valgrind only, ring waits are cut to this slice.
constexpr auto valgrind_wait_slice = std::chrono::milliseconds(1);

// user_data of SQEs whose CQE nobody waits for (cancel requests).
constexpr std::uint64_t ignored_user_data = 0;

// Every cancel request: it targets the request whose user_data is `target`, and its own CQE
// is ignored (the target's CQE, -ECANCELED or its result, is what its owner waits for).
void prepare_cancel(io_uring_sqe* sqe, void* target) noexcept {
  io_uring_prep_cancel(sqe, target, 0);
  io_uring_sqe_set_data64(sqe, ignored_user_data);
}

// At teardown, where nothing may throw: a free SQE, after one submit if the queue is full;
// null if there is still none (the cancel is skipped, and the bounded wait gives up).
void prepare_cancel_at_teardown(io_uring* ring, void* target) noexcept {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) {
    io_uring_submit(ring);
    sqe = io_uring_get_sqe(ring);
  }
  if (sqe != nullptr) prepare_cancel(sqe, target);
}

void throw_errno(int err, const char* what) {
  throw std::system_error(err, std::generic_category(), what);
}

}  // namespace

void ignore_sigpipe() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      ::sigaction(SIGPIPE, &ignore, nullptr);
    }
  });
}

reactor::reactor(unsigned entries, std::function<void()> on_wake, bool shared_timers)
    : ring_(testing::fault_hook::ring_entries(entries)),
      shared_timers_(shared_timers),
      on_wake_(std::move(on_wake)) {
  ignore_sigpipe();
  under_valgrind_ = under_valgrind();
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw_errno(errno, "weft: eventfd for the reactor's wake-up");
  wake_completion_.owner = this;
  wake_completion_.on_complete = [](completion* c, int, std::uint32_t) noexcept {
    reactor* self = static_cast<wake_read*>(c)->owner;
    self->wake_completion_.armed = false;
    if (self->stopping_) return;
    self->drain_remote_cancels();
    if (self->on_wake_) self->on_wake_();
    self->arm_wake_read();
  };
  try {
    arm_wake_read();
    testing::fault_hook::attach(this, ring_.get());  // last: a reactor that throws has none
  } catch (...) {
    ::close(wake_fd_);
    throw;
  }
}

void reactor::attach_to_this_thread() {
  weft::detail::tls_turn_now = weft::detail::coarse_now_ns();  // a loop starts: see poll()
  const auto me = std::this_thread::get_id();
  if (owner_thread_ == me) return;
  if (owner_thread_ != std::thread::id{} && !ring_.disabled() && ring_.defer_taskrun()) {
    throw std::logic_error(
        "weft: this executor's ring was first run on another thread; an executor runs on one "
        "thread (its ring accepts submissions from one thread only)");
  }
  ring_.enable();
  owner_thread_ = me;
}

reactor::~reactor() {
  {
    std::lock_guard lock(remote_mutex_);  // a cancel() in progress on another thread finishes
  }
  if (ring_.disabled() || (ring_.defer_taskrun() && owner_thread_ != std::this_thread::get_id())) {
    // Never run, or run by a thread that is not this one, which may not submit to the ring:
    // tearing the ring down cancels the armed read (the eventfd is never written from here on,
    // so the kernel has nothing to copy into our memory). Multishot owners are told their
    // request is gone, as by a final CQE, so none keeps pointing at this reactor.
    stopping_ = true;
    while (persistent_completion* p = persistent_) {
      // The ring's teardown ends the request, as its final CQE would have: count it so.
      if (in_flight_ > 0) --in_flight_;
      p->on_complete(p, -ECANCELED, 0);
      if (persistent_ == p) untrack(*p);
    }
    ::close(wake_fd_);
    testing::fault_hook::detach(this, in_flight_,
                                counters_.cq_overflows.load(std::memory_order_relaxed));
    return;
  }
  // Cancel the armed read and the multishot requests, and wait for their last CQEs, so the
  // kernel never writes into freed memory and their owners can free themselves.
  stopping_ = true;
  before_submit();  // what the tasks queued last goes out with the cancels
  for (persistent_completion* p = persistent_; p != nullptr; p = p->next_persistent) {
    prepare_cancel_at_teardown(ring_.get(), p);
  }
  for (int tries = 0; persistent_ != nullptr && tries < 1000; ++tries) {
    io_uring_submit_and_wait(ring_.get(), 1);
    reap();
  }
  if (wake_completion_.armed) {
    prepare_cancel_at_teardown(ring_.get(), &wake_completion_);
    for (int tries = 0; wake_completion_.armed && tries < 1000; ++tries) {
      io_uring_submit_and_wait(ring_.get(), 1);
      reap();
    }
  }
  ::close(wake_fd_);
  testing::fault_hook::detach(this, in_flight_,
                              counters_.cq_overflows.load(std::memory_order_relaxed));
}

void reactor::arm_wake_read() {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_buffer_, sizeof wake_buffer_, 0);
  io_uring_sqe_set_data(sqe, &wake_completion_);
  wake_completion_.armed = true;
}

void reactor::before_submit() noexcept {
  if (under_valgrind_) [[unlikely]]
    declare_queued_writes();
  testing::fault_hook::before_submit(this, ring_.get(), &wake_completion_);
}

void reactor::declare_queued_writes() noexcept {
  io_uring* r = ring_.get();
  for (unsigned i = r->sq.sqe_head; i != r->sq.sqe_tail; ++i) {
    declare_kernel_writes(r->sq.sqes[i & r->sq.ring_mask]);
  }
}

io_uring_sqe* reactor::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  while (sqe == nullptr) {
    bump(counters_.enter_calls);
    before_submit();
    int rc = io_uring_submit(ring_.get());
    if (rc < 0 && rc != -EAGAIN && rc != -EBUSY && rc != -EINTR) {
      throw_errno(-rc, "weft: io_uring_submit");
    }
    if (rc == -EAGAIN || rc == -EBUSY) reap();  // CQ backed up: drain before retrying
    // reap() hands each CQE back to the kernel before its callback runs, so calling it here,
    // even from inside a callback, never handles a CQE twice.
    sqe = io_uring_get_sqe(ring_.get());
  }
  return sqe;
}

void reactor::cancel(completion* c) {
  if (current_ == this) {
    prepare_cancel(get_sqe(), c);
    return;
  }
  // Under the lock, like the executors' remote schedule: see cooperative::schedule_slow.
  std::lock_guard lock(remote_mutex_);
  remote_cancels_.push_back(c);
  wake();
}

void reactor::track(persistent_completion& c) noexcept {
  c.prev_persistent = nullptr;
  c.next_persistent = persistent_;
  if (persistent_ != nullptr) persistent_->prev_persistent = &c;
  persistent_ = &c;
}

void reactor::untrack(persistent_completion& c) noexcept {
  if (c.prev_persistent != nullptr) {
    c.prev_persistent->next_persistent = c.next_persistent;
  } else if (persistent_ == &c) {
    persistent_ = c.next_persistent;
  }
  if (c.next_persistent != nullptr) c.next_persistent->prev_persistent = c.prev_persistent;
  c.prev_persistent = c.next_persistent = nullptr;
}

void reactor::retract_cancel(completion* c) noexcept {
  std::lock_guard lock(remote_mutex_);
  std::erase(remote_cancels_, c);
}

void reactor::drain_remote_cancels() {
  std::vector<completion*> pending;
  {
    std::lock_guard lock(remote_mutex_);
    pending.swap(remote_cancels_);
  }
  for (completion* c : pending) prepare_cancel(get_sqe(), c);
}

void reactor::wake() noexcept {
  const std::uint64_t one = 1;
  // EAGAIN means the counter is saturated: a wake-up is pending anyway.
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

bool reactor::next_deadline(clock::time_point& deadline) noexcept {
  timer_guard guard(*this);
  if (timers_.empty()) return false;
  deadline = timers_.top()->deadline;
  return true;
}

bool reactor::expire_timers(clock::time_point now) {
  // Under the lock when timers are shared: a task resumed on another thread may cancel its
  // timer at any moment, and once cancel_timer returns its node may be freed, so a node is
  // taken out and its callback run without letting go of the heap in between.
  timer_guard guard(*this);
  bool any = false;
  while (detail::timer_node* n = timers_.pop_expired(now)) {
    bump(counters_.timers_fired);
    weft::detail::trace_instant("timer");
    n->on_expire(n);
    any = true;
  }
  return any;
}

void reactor::reap() {
  io_uring* r = ring_.get();
  // With IORING_FEAT_NODROP the kernel parks completions that did not fit and sets this flag;
  // an enter flushes them once the ring has room, so none is lost.
  if ((IO_URING_READ_ONCE(*r->sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0)
    bump(counters_.cq_overflows);
  if (io_uring_cq_ready(r) == 0 &&
      (IO_URING_READ_ONCE(*r->sq.kflags) & IORING_SQ_CQ_OVERFLOW) == 0) {
    return;  // the common case on a busy loop: no syscall, no call
  }
  for (;;) {
    reap_ready();
    // Parked completions only: flushing them needs an enter. (liburing's io_uring_peek_cqe
    // would also enter whenever a DEFER_TASKRUN ring flags pending task work, an extra system
    // call per loop turn that split each turn's batch in two: the next poll collects that
    // work anyway.)
    if ((IO_URING_READ_ONCE(*r->sq.kflags) & IORING_SQ_CQ_OVERFLOW) == 0) return;
    bump(counters_.enter_calls);
    if (io_uring_get_events(r) < 0 || io_uring_cq_ready(r) == 0) return;
  }
}

void reactor::reap_ready() {
  io_uring* r = ring_.get();
  io_uring_cqe* cqe = nullptr;
  // One CQE at a time, marked seen before its callback: a callback may queue SQEs, and a full
  // submission queue makes get_sqe() reap re-entrantly. The peek never enters the kernel.
  while (__io_uring_peek_cqe(r, &cqe, nullptr) == 0 && cqe != nullptr) {
    void* data = io_uring_cqe_get_data(cqe);
    const int result = cqe->res;
    const std::uint32_t flags = cqe->flags;
    io_uring_cqe_seen(r, cqe);
    bump(counters_.completions);
    if (data == nullptr) continue;
    auto* c = static_cast<completion*>(data);
    if (c != &wake_completion_ && (flags & IORING_CQE_F_MORE) == 0) --in_flight_;
    weft::detail::trace_instant(c == &wake_completion_ ? "wake" : "complete", result);
    c->on_complete(c, result, flags);
  }
}

void reactor::poll(bool block, clock::time_point limit, bool run_timers) {
  io_uring* r = ring_.get();
  if (under_valgrind_) [[unlikely]]
    limit = std::min(limit, clock::now() + valgrind_wait_slice);
  clock::time_point deadline{};
  weft::detail::paused_clock* const paused = weft::detail::tls_paused_clock;
  if (block && next_deadline(deadline)) {
    // A paused clock jumps to the next timer when nothing else can happen: the loop would
    // block, and no I/O is in flight (run_options::paused_clock).
    if (paused != nullptr && in_flight_ == 0 && deadline > paused->now) paused->now = deadline;
    // Timers that are already due make this turn non-blocking.
    if (deadline <= weft::now() && (!run_timers || expire_timers(weft::now()))) block = false;
  }
  before_submit();  // each branch below may submit
  if (block) {
    __kernel_timespec ts{};
    __kernel_timespec* timeout = nullptr;
    // Paused: a timer never ends a wait in real time (only I/O, a wake-up or `limit` do).
    bool has_deadline = paused == nullptr && next_deadline(deadline);
    if (limit != clock::time_point::max() && (!has_deadline || limit < deadline)) {
      deadline = limit;
      has_deadline = true;
    }
    if (has_deadline) {
      const auto wait = deadline - clock::now();
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      const long long clamped = ns < 0 ? 0 : ns;
      ts.tv_sec = clamped / 1'000'000'000;
      ts.tv_nsec = clamped % 1'000'000'000;
      timeout = &ts;
    }
    io_uring_cqe* cqe = nullptr;
    bump(counters_.enter_calls);
    int rc = timeout != nullptr ? io_uring_submit_and_wait_timeout(r, &cqe, 1, timeout, nullptr)
                                : io_uring_submit_and_wait(r, 1);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      throw_errno(-rc, "weft: io_uring_submit_and_wait");
    }
  } else if (ring_.defer_taskrun() && !ring_.taskrun_flag()) {
    // Completions wait in the kernel until we ask, and it does not say when there are any:
    // one enter submits and collects them (with the flag, the branch below enters only then:
    // a syscall every event_interval tasks was most of a yield's cost).
    bump(counters_.enter_calls);
    int rc = io_uring_submit_and_get_events(r);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      throw_errno(-rc, "weft: io_uring_submit_and_get_events");
    }
  } else if (io_uring_sq_ready(r) > 0 || (IO_URING_READ_ONCE(*r->sq.kflags) &
                                          (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0) {
    // Also enter when the kernel has completion work waiting for us (COOP_TASKRUN's flag) or
    // parked completions: otherwise a loop whose tasks are always ready would never see them.
    bump(counters_.enter_calls);
    int rc = io_uring_submit_and_get_events(r);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      throw_errno(-rc, "weft: io_uring_submit");
    }
  }
  reap();
  if (run_timers && next_deadline(deadline) && deadline <= weft::now()) {
    expire_timers(weft::now());
  }
  // The tasks this turn made ready run after it: their waits begin now (the task dump).
  weft::detail::tls_turn_now = weft::detail::coarse_now_ns();
}

std::shared_ptr<weft::detail::buffer_ring> reactor::receive_buffers() {
  if (!receive_buffers_) {
    using weft::detail::buffer_ring;
    receive_buffers_ =
        std::make_shared<buffer_ring>(ring_.get(), buffer_ring::default_group,
                                      buffer_ring::default_count, buffer_ring::default_size);
  }
  return receive_buffers_;
}

}  // namespace weft::io

namespace weft::detail {

buffer_ring::buffer_ring(io_uring* ring, unsigned short group, unsigned count, std::size_t size)
    : count_(count), size_(size), group_(group) {
  const std::size_t descriptors = count * sizeof(io_uring_buf);  // a multiple of the page size
  mapped_ = descriptors + count * size;
  void* mem = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) io::throw_errno(errno, "mmap");
  ring_ = static_cast<io_uring_buf_ring*>(mem);
  buffers_ = static_cast<std::byte*>(mem) + descriptors;
  io_uring_buf_ring_init(ring_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(ring_);
  reg.ring_entries = count;
  reg.bgid = group;
  if (const int rc = io_uring_register_buf_ring(ring, &reg, 0); rc != 0) {
    ::munmap(mem, mapped_);
    io::throw_errno(-rc, "io_uring_register_buf_ring");
  }
  const int mask = io_uring_buf_ring_mask(count);
  for (unsigned i = 0; i < count; ++i) {
    io_uring_buf_ring_add(ring_, data(static_cast<unsigned short>(i)), static_cast<unsigned>(size),
                          static_cast<unsigned short>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(ring_, static_cast<int>(count));
}

buffer_ring::~buffer_ring() {
  // The registration ends with the ring (or was never used again): the kernel keeps its own
  // reference to the pages it pinned, so unmapping here is safe either way.
  ::munmap(ring_, mapped_);
}

void buffer_ring::give_back(unsigned short bid) noexcept {
  while (lock_.exchange(true, std::memory_order_acquire)) {
    while (lock_.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  io_uring_buf_ring_add(ring_, data(bid), static_cast<unsigned>(size_), bid,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(ring_, 1);  // a release store of the tail: the kernel sees the entry
  lock_.store(false, std::memory_order_release);
}

}  // namespace weft::detail
