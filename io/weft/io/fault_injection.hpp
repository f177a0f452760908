// weft: test-only fault injection into the ring's operations (meson -Dfault_injection=true).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <liburing.h>

/// Test-only tools: making io_uring operations fail on purpose, and counting what a process
/// still holds at shutdown. Nothing here is for production code.
///
/// The injector exists only in a build configured with `-Dfault_injection=true` (the macro
/// WEFT_FAULT_INJECTION). In any other build `fault_injection_built()` is false, no code runs
/// in the submit path, `set_fault_plan` throws, and the counters read zero.
namespace weft::io::testing {

/// What an injected fault does to one operation.
enum class fault_kind : unsigned {
  enomem,          ///< fails with ENOMEM (any eligible operation)
  eagain,          ///< fails with EAGAIN (accept, recv, send, recvmsg, sendmsg)
  econnreset,      ///< fails with ECONNRESET (recv, send, recvmsg, sendmsg; read/write on sockets)
  emfile,          ///< fails with EMFILE (accept, openat, openat2, socket)
  short_transfer,  ///< moves fewer bytes: the SQE's length shrinks to 1..len-1 (recv, send;
                   ///< read/write on regular files, pipes and sockets)
};

/// How many fault kinds there are (the size of the per-kind arrays).
inline constexpr std::size_t fault_kind_count = 5;

/// The kind's name as `WEFT_FAULTS` spells it ("enomem", ..., "short").
const char* to_string(fault_kind kind) noexcept;

/// Which faults to inject, and where. Faults are decided when an operation is submitted, never
/// by rewriting a completion: an error turns the SQE into a NOP that completes with that error
/// (IORING_NOP_INJECT_RESULT, Linux 6.10), a short transfer shrinks the SQE's length so the
/// kernel really moves fewer bytes. A kind is injected only into operations that can really
/// fail that way (see fault_kind).
struct fault_plan {
  /// Seeds the per-reactor random streams: reactor number i (counted from 0 in creation order
  /// since the plan was set) draws from a stream derived from (seed, i), so a single-threaded
  /// run with the same seed and the same operations injects the same faults at the same
  /// operation numbers.
  std::uint64_t seed = 0;
  /// The probability of each kind per eligible operation, indexed by fault_kind. Their sum
  /// must not exceed 1.
  std::array<double, fault_kind_count> probability{};
  /// Operation numbers that get `chosen_kind` when it applies to their opcode, whatever the
  /// probabilities say. They count, per reactor and from 0, the eligible operations (see
  /// `opcodes`) submitted through `reactor::submit`.
  std::vector<std::uint64_t> chosen;
  /// The kind injected at the `chosen` operation numbers.
  fault_kind chosen_kind = fault_kind::enomem;
  /// The opcodes that may be faulted (IORING_OP_*). Empty: every operation weft performs on
  /// sockets and files (accept, connect, recv, send, recvmsg, sendmsg, read, write, openat,
  /// openat2, statx, fsync, shutdown, poll_add, socket); never close (an injected failure would
  /// leak the fd, which a real close does not) and never nop unless listed here.
  std::vector<std::uint8_t> opcodes;
  /// Overrides the submission-queue size of rings created while the plan is set (0: keep the
  /// executor's). The completion queue is four times that, so a tiny ring overflows for real.
  unsigned ring_entries = 0;
};

/// Parses a plan written as `WEFT_FAULTS` takes it: comma-separated `key=value` pairs, keys
/// `seed`, `enomem`, `eagain`, `econnreset`, `emfile`, `short` (probabilities), `ring`
/// (ring_entries), `at` (chosen operation numbers separated by `+`) and `at_kind` (a kind
/// name). Example: `seed=7,enomem=0.01,econnreset=0.02,short=0.2`.
/// Errors: throws std::invalid_argument naming the bad pair. Thread-safety: pure.
fault_plan parse_fault_plan(std::string_view spec);

/// True when this build has the injector (configured with `-Dfault_injection=true`).
constexpr bool fault_injection_built() noexcept {
#ifdef WEFT_FAULT_INJECTION
  return true;
#else
  return false;
#endif
}

/// Installs `plan` for the reactors created from now on (running ones keep theirs), restarts
/// the reactor numbering and clears the counters and the fault log. Errors: throws
/// std::logic_error when the injector is not built, std::invalid_argument for probabilities
/// outside [0, 1] or summing above 1. Thread-safety: any thread.
void set_fault_plan(const fault_plan& plan);

/// Removes the plan: reactors created from now on inject nothing. Also cancels `WEFT_FAULTS`.
/// Thread-safety: any thread.
void clear_fault_plan() noexcept;

/// True when a plan is installed (by set_fault_plan, or by `WEFT_FAULTS`, which the first
/// reactor of the process reads once). Thread-safety: any thread.
bool faults_active() noexcept;

/// Reads `WEFT_FAULTS` now, if no plan was installed and it was not read yet (the first reactor
/// does it anyway). Errors: throws std::invalid_argument for a malformed value.
void load_faults_from_environment();

/// What the injector did, and what was left over at shutdown, summed over the process.
struct fault_report {
  std::array<std::uint64_t, fault_kind_count> injected{};  ///< faults injected, by kind
  std::uint64_t operations = 0;             ///< operations that went through reactor::submit
  std::uint64_t cq_overflows = 0;           ///< reactor turns that found the CQ overflowed
  std::uint64_t reactors = 0;               ///< reactors destroyed
  std::uint64_t in_flight_at_shutdown = 0;  ///< operations still in flight when a reactor died
  std::int64_t live_tasks = 0;              ///< task frames alive now (created, not destroyed)
};

/// The counters now. Thread-safety: any thread (each counter is read atomically on its own).
fault_report fault_totals() noexcept;

/// One line `weft-faults: operations=N enomem=N ... live_tasks=N` for logs and test scripts.
std::string describe(const fault_report& report);

/// One injected fault, as recorded in the fault log.
struct fault_event {
  std::uint64_t reactor = 0;             ///< the reactor's number (creation order since the plan)
  std::uint64_t operation = 0;           ///< the eligible operation's number on that reactor
  std::uint8_t opcode = 0;               ///< the original IORING_OP_*
  fault_kind kind = fault_kind::enomem;  ///< what was injected
  /// Equal when every field is.
  friend bool operator==(const fault_event&, const fault_event&) = default;
};

/// The first 100,000 faults injected since the plan was set, in injection order (per reactor
/// ordered; reactors on several threads interleave). Thread-safety: any thread.
std::vector<fault_event> fault_log();

/// How many file descriptors the process has open now (the entries of /proc/self/fd, less the
/// one used to list them). A test compares it before and after to find leaked fds.
/// Errors: throws std::system_error when /proc/self/fd cannot be read.
std::size_t open_fd_count();

}  // namespace weft::io::testing
