// weft (private): the seeded scheduling mode's source of perturbation (run_options::seed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace weft::sched {

/// Picks, from a seed, which of the first few ready tasks runs next: the same seed and the same
/// sequence of queue sizes give the same picks, so a run order that made a test fail replays.
/// Not thread-safe: the executor calls it where it pops its run queue (under the queue's lock
/// in single-lock mode).
class seeded_order {
 public:
  /// How far into the run queue a pick may reach (a wider window reorders more, but starves
  /// the tasks at the head longer; 8 keeps every task within a few turns of its FIFO place).
  static constexpr std::size_t window = 8;

  /// Off when `seed` is empty.
  explicit seeded_order(std::optional<std::uint64_t> seed) noexcept
      : on_(seed.has_value()), state_(seed.value_or(0) ^ 0x9E3779B97F4A7C15ull) {}

  /// True when a seed was given.
  bool on() const noexcept { return on_; }

  /// The place, counted from the head, of the task to run next among `ready` ready tasks
  /// (ready > 0).
  std::size_t pick(std::size_t ready) noexcept {
    const std::size_t span = ready < window ? ready : window;
    return static_cast<std::size_t>(next() % span);
  }

 private:
  // splitmix64: a good spread from consecutive seeds, one multiply-xorshift chain per pick.
  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  bool on_;
  std::uint64_t state_;
};

}  // namespace weft::sched
