#include "fault_hook.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

#include <weft/task.hpp>

// liburing 2.3 predates it: nop_flags (the rw_flags union) bit 0 makes a NOP complete with the
// result in sqe->len (Linux 6.10).
#ifndef IORING_NOP_INJECT_RESULT
#define IORING_NOP_INJECT_RESULT (1U << 0)
#endif

namespace weft::io::testing {
namespace {

constexpr std::size_t log_limit = 100'000;

struct counters {
  std::array<std::atomic<std::uint64_t>, fault_kind_count> injected{};
  std::atomic<std::uint64_t> operations{0};
  std::atomic<std::uint64_t> cq_overflows{0};
  std::atomic<std::uint64_t> reactors{0};
  std::atomic<std::uint64_t> in_flight_at_shutdown{0};
};

struct state {
  std::mutex mutex;
  std::optional<fault_plan> plan;
  bool environment_read = false;
  std::uint64_t next_reactor = 0;
  std::vector<fault_event> log;
  counters totals;
  // The injectors of the reactors alive now (fault_hook), by the reactor's address.
  std::unordered_map<const void*, std::unique_ptr<fault_injector>> injectors;
};

state& global() {
  static state s;  // never destroyed before the reactors that use it (function-local static)
  return s;
}

std::atomic<bool> active{false};

void reset_counters_locked(state& s) {
  for (auto& c : s.totals.injected) c.store(0, std::memory_order_relaxed);
  s.totals.operations.store(0, std::memory_order_relaxed);
  s.totals.cq_overflows.store(0, std::memory_order_relaxed);
  s.totals.reactors.store(0, std::memory_order_relaxed);
  s.totals.in_flight_at_shutdown.store(0, std::memory_order_relaxed);
  s.log.clear();
  s.next_reactor = 0;
}

void validate(const fault_plan& plan) {
  double sum = 0;
  for (double p : plan.probability) {
    if (!(p >= 0 && p <= 1)) throw std::invalid_argument("fault plan: probability outside [0, 1]");
    sum += p;
  }
  if (sum > 1 + 1e-9) throw std::invalid_argument("fault plan: probabilities sum above 1");
}

void install_locked(state& s, const fault_plan& plan) {
  s.plan = plan;
  reset_counters_locked(s);
  active.store(true, std::memory_order_release);
}

void read_environment_locked(state& s) {
  if (s.environment_read) return;
  s.environment_read = true;
  if (s.plan) return;
  const char* spec = std::getenv("WEFT_FAULTS");
  if (spec == nullptr || *spec == '\0') return;
  fault_plan plan = parse_fault_plan(spec);
  if (!fault_injection_built()) {
    throw std::invalid_argument(
        "WEFT_FAULTS is set but this weft was built without -Dfault_injection=true");
  }
  validate(plan);
  install_locked(s, plan);
}

std::uint64_t splitmix(std::uint64_t& x) noexcept {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The fd's file type, or 0 when it cannot be told (fixed files, closed fds).
unsigned file_type(int fd) noexcept {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return 0;
  return st.st_mode & S_IFMT;
}

bool applies(fault_kind kind, const io_uring_sqe& sqe) noexcept {
  const std::uint8_t op = sqe.opcode;
  const bool rw = op == IORING_OP_READ || op == IORING_OP_WRITE;
  switch (kind) {
    case fault_kind::enomem: return true;
    case fault_kind::eagain:
      return op == IORING_OP_ACCEPT || op == IORING_OP_RECV || op == IORING_OP_SEND ||
             op == IORING_OP_RECVMSG || op == IORING_OP_SENDMSG;
    case fault_kind::econnreset:
      return op == IORING_OP_RECV || op == IORING_OP_SEND || op == IORING_OP_RECVMSG ||
             op == IORING_OP_SENDMSG || (rw && file_type(sqe.fd) == S_IFSOCK);
    case fault_kind::emfile:
      return op == IORING_OP_ACCEPT || op == IORING_OP_OPENAT || op == IORING_OP_OPENAT2 ||
             op == IORING_OP_SOCKET;
    case fault_kind::short_transfer: {
      if (sqe.len < 2) return false;
      if (op == IORING_OP_RECV || op == IORING_OP_SEND) return true;
      if (!rw) return false;
      // Not signalfd, eventfd or timerfd: those never return part of a record.
      const unsigned type = file_type(sqe.fd);
      return type == S_IFREG || type == S_IFIFO || type == S_IFSOCK;
    }
  }
  return false;
}

int error_of(fault_kind kind) noexcept {
  switch (kind) {
    case fault_kind::enomem: return ENOMEM;
    case fault_kind::eagain: return EAGAIN;
    case fault_kind::econnreset: return ECONNRESET;
    case fault_kind::emfile: return EMFILE;
    case fault_kind::short_transfer: break;
  }
  return 0;
}

// Turns the SQE into a NOP completing with -err: same user_data, same link flags (a failed
// request breaks its link as the real one would), nothing the kernel would touch memory for.
void turn_into_failing_nop(io_uring_sqe* sqe, int err) noexcept {
  const __u64 data = sqe->user_data;
  const __u8 flags = sqe->flags & (IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_IO_DRAIN);
  std::memset(sqe, 0, sizeof *sqe);
  sqe->opcode = IORING_OP_NOP;
  sqe->flags = flags;
  sqe->user_data = data;
  sqe->rw_flags = IORING_NOP_INJECT_RESULT;
  sqe->len = static_cast<__u32>(-err);
}

std::optional<fault_kind> kind_named(std::string_view name) {
  for (unsigned k = 0; k < fault_kind_count; ++k) {
    if (name == to_string(static_cast<fault_kind>(k))) return static_cast<fault_kind>(k);
  }
  return std::nullopt;
}

}  // namespace

const char* to_string(fault_kind kind) noexcept {
  switch (kind) {
    case fault_kind::enomem: return "enomem";
    case fault_kind::eagain: return "eagain";
    case fault_kind::econnreset: return "econnreset";
    case fault_kind::emfile: return "emfile";
    case fault_kind::short_transfer: return "short";
  }
  return "?";
}

fault_plan parse_fault_plan(std::string_view spec) {
  fault_plan plan;
  auto bad = [](std::string_view pair, const char* why) {
    return std::invalid_argument("WEFT_FAULTS: '" + std::string(pair) + "': " + why);
  };
  auto number = [&](std::string_view pair, std::string_view text, auto& out) {
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, out);
    if (ec != std::errc() || ptr != end) throw bad(pair, "not a number");
  };
  while (!spec.empty()) {
    const std::size_t comma = spec.find(',');
    const std::string_view pair = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) throw bad(pair, "wants key=value");
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    if (key == "seed") {
      number(pair, value, plan.seed);
    } else if (key == "ring") {
      number(pair, value, plan.ring_entries);
    } else if (key == "at") {
      std::string_view rest = value;
      while (!rest.empty()) {
        const std::size_t plus = rest.find('+');
        std::uint64_t n = 0;
        number(pair, rest.substr(0, plus), n);
        plan.chosen.push_back(n);
        rest = plus == std::string_view::npos ? std::string_view() : rest.substr(plus + 1);
      }
    } else if (key == "at_kind") {
      auto k = kind_named(value);
      if (!k) throw bad(pair, "unknown fault kind");
      plan.chosen_kind = *k;
    } else if (auto k = kind_named(key)) {
      double p = 0;
      number(pair, value, p);
      if (!(p >= 0 && p <= 1)) throw bad(pair, "a probability is between 0 and 1");
      plan.probability[static_cast<unsigned>(*k)] = p;
    } else {
      throw bad(pair,
                "unknown key (seed, enomem, eagain, econnreset, emfile, short, ring, at, "
                "at_kind)");
    }
  }
  validate(plan);
  return plan;
}

void set_fault_plan(const fault_plan& plan) {
  if (!fault_injection_built()) {
    throw std::logic_error("weft was built without -Dfault_injection=true: no fault injector");
  }
  validate(plan);
  state& s = global();
  std::lock_guard lock(s.mutex);
  s.environment_read = true;
  install_locked(s, plan);
}

void clear_fault_plan() noexcept {
  state& s = global();
  std::lock_guard lock(s.mutex);
  s.environment_read = true;
  s.plan.reset();
  active.store(false, std::memory_order_release);
}

bool faults_active() noexcept {
  return active.load(std::memory_order_acquire);
}

void load_faults_from_environment() {
  state& s = global();
  std::lock_guard lock(s.mutex);
  read_environment_locked(s);
}

fault_report fault_totals() noexcept {
  const counters& c = global().totals;
  fault_report r;
  for (std::size_t k = 0; k < fault_kind_count; ++k) {
    r.injected[k] = c.injected[k].load(std::memory_order_relaxed);
  }
  r.operations = c.operations.load(std::memory_order_relaxed);
  r.cq_overflows = c.cq_overflows.load(std::memory_order_relaxed);
  r.reactors = c.reactors.load(std::memory_order_relaxed);
  r.in_flight_at_shutdown = c.in_flight_at_shutdown.load(std::memory_order_relaxed);
#ifdef WEFT_FAULT_INJECTION
  r.live_tasks = weft::detail::live_task_frames.load(std::memory_order_relaxed);
#endif
  return r;
}

std::string describe(const fault_report& r) {
  std::string line = "weft-faults: operations=" + std::to_string(r.operations);
  for (std::size_t k = 0; k < fault_kind_count; ++k) {
    line += ' ';
    line += to_string(static_cast<fault_kind>(k));
    line += '=' + std::to_string(r.injected[k]);
  }
  line += " cq_overflows=" + std::to_string(r.cq_overflows);
  line += " reactors=" + std::to_string(r.reactors);
  line += " in_flight=" + std::to_string(r.in_flight_at_shutdown);
  line += " live_tasks=" + std::to_string(r.live_tasks);
  return line;
}

std::vector<fault_event> fault_log() {
  state& s = global();
  std::lock_guard lock(s.mutex);
  return s.log;
}

std::size_t open_fd_count() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    throw std::system_error(errno, std::generic_category(), "opendir /proc/self/fd");
  }
  std::size_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;  // the directory's own fd
}

std::unique_ptr<fault_injector> fault_injector::for_new_reactor() {
  state& s = global();
  std::lock_guard lock(s.mutex);
  read_environment_locked(s);
  if (!s.plan) return nullptr;
  return std::make_unique<fault_injector>(*s.plan, s.next_reactor++);
}

unsigned fault_injector::ring_entries(unsigned requested) {
  state& s = global();
  std::lock_guard lock(s.mutex);
  read_environment_locked(s);
  return s.plan && s.plan->ring_entries != 0 ? s.plan->ring_entries : requested;
}

fault_injector::fault_injector(const fault_plan& plan, std::uint64_t reactor_number)
    : plan_(plan), reactor_(reactor_number), state_(plan.seed) {
  // Streams of different reactors start far apart: mix the number into the seed.
  std::uint64_t mix = reactor_number * 0xd1b54a32d192ed03ULL + 1;
  state_ ^= splitmix(mix);
}

std::uint64_t fault_injector::next() noexcept {
  return splitmix(state_);
}

bool fault_injector::eligible(std::uint8_t op) const noexcept {
  if (!plan_.opcodes.empty()) {
    for (std::uint8_t o : plan_.opcodes) {
      if (o == op) return true;
    }
    return false;
  }
  switch (op) {
    case IORING_OP_ACCEPT:
    case IORING_OP_CONNECT:
    case IORING_OP_RECV:
    case IORING_OP_SEND:
    case IORING_OP_RECVMSG:
    case IORING_OP_SENDMSG:
    case IORING_OP_READ:
    case IORING_OP_WRITE:
    case IORING_OP_OPENAT:
    case IORING_OP_OPENAT2:
    case IORING_OP_STATX:
    case IORING_OP_FSYNC:
    case IORING_OP_SHUTDOWN:
    case IORING_OP_POLL_ADD:
    case IORING_OP_SOCKET: return true;
    default: return false;
  }
}

void fault_injector::on_submit(io_uring_sqe* sqe) noexcept {
  state& s = global();
  s.totals.operations.fetch_add(1, std::memory_order_relaxed);
  const std::uint8_t op = sqe->opcode;
  if (!eligible(op)) return;
  const std::uint64_t number = operations_++;
  // Two draws per eligible operation whatever happens, so one decision never shifts the next.
  const std::uint64_t pick = next();
  const std::uint64_t length = next();
  std::optional<fault_kind> kind;
  for (std::uint64_t c : plan_.chosen) {
    if (c == number && applies(plan_.chosen_kind, *sqe)) kind = plan_.chosen_kind;
  }
  if (!kind) {
    const double u = static_cast<double>(pick >> 11) * 0x1.0p-53;
    double edge = 0;
    for (std::size_t k = 0; k < fault_kind_count && !kind; ++k) {
      const double p = plan_.probability[k];
      if (p <= 0) continue;
      edge += p;
      if (u < edge && applies(static_cast<fault_kind>(k), *sqe)) kind = static_cast<fault_kind>(k);
      if (u < edge) break;
    }
  }
  if (!kind) return;
  if (*kind == fault_kind::short_transfer) {
    sqe->len = 1 + static_cast<__u32>(length % (sqe->len - 1));
  } else {
    turn_into_failing_nop(sqe, error_of(*kind));
  }
  s.totals.injected[static_cast<unsigned>(*kind)].fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(s.mutex);
  if (s.log.size() < log_limit) s.log.push_back({reactor_, number, op, *kind});
}

void fault_injector::on_reactor_destroyed(std::uint64_t in_flight,
                                          std::uint64_t cq_overflows) noexcept {
  counters& c = global().totals;
  c.reactors.fetch_add(1, std::memory_order_relaxed);
  c.in_flight_at_shutdown.fetch_add(in_flight, std::memory_order_relaxed);
  c.cq_overflows.fetch_add(cq_overflows, std::memory_order_relaxed);
}

#ifdef WEFT_FAULT_INJECTION
void fault_hook::attach(const void* reactor, const io_uring* ring) {
  std::unique_ptr<fault_injector> injector = fault_injector::for_new_reactor();
  if (!injector) return;
  injector->seen = ring->sq.sqe_tail;
  state& s = global();
  std::lock_guard lock(s.mutex);
  s.injectors[reactor] = std::move(injector);
}

void fault_hook::before_submit(const void* reactor, io_uring* ring, const void* own) noexcept {
  fault_injector* injector = nullptr;
  {
    state& s = global();
    std::lock_guard lock(s.mutex);  // released before on_submit, which takes it to log
    const auto it = s.injectors.find(reactor);
    if (it == s.injectors.end()) return;
    injector = it->second.get();  // erased only by this reactor's detach, on its thread
  }
  const auto own_data = reinterpret_cast<std::uintptr_t>(own);
  for (; injector->seen != ring->sq.sqe_tail; ++injector->seen) {
    io_uring_sqe* sqe = &ring->sq.sqes[injector->seen & ring->sq.ring_mask];
    if (sqe->user_data != 0 && sqe->user_data != own_data) injector->on_submit(sqe);
  }
}

void fault_hook::detach(const void* reactor, std::uint64_t in_flight,
                        std::uint64_t cq_overflows) noexcept {
  state& s = global();
  std::unique_lock lock(s.mutex);
  if (s.injectors.erase(reactor) == 0) return;
  lock.unlock();
  fault_injector::on_reactor_destroyed(in_flight, cq_overflows);
}
#endif

}  // namespace weft::io::testing
