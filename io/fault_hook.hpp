// weft (private): the reactor's side of fault injection; <weft/io/fault_injection.hpp> is what
// tests use.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>

#include <weft/io/fault_injection.hpp>

namespace weft::io::testing {

/// The injector of one reactor: decides, for each submitted SQE, whether and how to fault it.
/// Created when the reactor is, if a plan is active; used only on the reactor's thread.
class fault_injector {
 public:
  /// The injector for the next reactor, or null when no plan is active (reads `WEFT_FAULTS`
  /// first if nobody did). Errors: std::invalid_argument for a malformed `WEFT_FAULTS`.
  static std::unique_ptr<fault_injector> for_new_reactor();
  /// The ring size a new reactor should use: `requested`, or the plan's ring_entries.
  /// Errors: as for_new_reactor.
  static unsigned ring_entries(unsigned requested);

  /// Built by for_new_reactor from the plan and the reactor's number.
  fault_injector(const fault_plan& plan, std::uint64_t reactor_number);

  /// Looks at a prepared SQE (user_data set) and maybe rewrites it. Owner thread only.
  void on_submit(io_uring_sqe* sqe) noexcept;

  /// Adds this reactor's end-of-life numbers to the process counters. Owner thread only.
  static void on_reactor_destroyed(std::uint64_t in_flight, std::uint64_t cq_overflows) noexcept;

  /// The ring position up to which on_submit has seen the queued SQEs.
  unsigned seen = 0;

 private:
  std::uint64_t next() noexcept;
  bool eligible(std::uint8_t opcode) const noexcept;

  fault_plan plan_;
  std::uint64_t reactor_;
  std::uint64_t state_;
  std::uint64_t operations_ = 0;
};

/// What a reactor calls. With -Dfault_injection=true, the injectors live here, one per reactor
/// found by its address, so the public reactor carries nothing of them; otherwise every call is
/// an empty inline function and a release reactor has no trace of the injector.
///
/// `before_submit` offers the injector every SQE queued on `ring` since its last call, in queue
/// order, except the reactor's own (user_data 0: cancels and neutralized slots; or `own`: the
/// wake-up read): the operations of `reactor::submit`. The reactor calls it before each flush
/// of its submission queue (calling it more often is harmless: each SQE is offered once).
/// Thread-safety: each reactor calls it on its own thread; the injectors' table is locked.
struct fault_hook {
#ifdef WEFT_FAULT_INJECTION
  static unsigned ring_entries(unsigned requested) {
    return fault_injector::ring_entries(requested);
  }
  static void attach(const void* reactor, const io_uring* ring);
  static void before_submit(const void* reactor, io_uring* ring, const void* own) noexcept;
  static void detach(const void* reactor, std::uint64_t in_flight,
                     std::uint64_t cq_overflows) noexcept;
#else
  static constexpr unsigned ring_entries(unsigned requested) noexcept {
    return requested;
  }
  static void attach(const void*, const io_uring*) noexcept {}
  static void before_submit(const void*, io_uring*, const void*) noexcept {}
  static void detach(const void*, std::uint64_t, std::uint64_t) noexcept {}
#endif
};

}  // namespace weft::io::testing
