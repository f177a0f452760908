// weft: generator<T>, a synchronous coroutine that yields a sequence of values.
#pragma once

#include <coroutine>
#include <exception>
#include <iterator>
#include <memory>
#include <type_traits>
#include <utility>

namespace weft {

/// A lazy sequence produced by a coroutine with `co_yield`, consumed with a range-for loop.
///
/// Each step resumes the coroutine until its next `co_yield` or its end; an exception thrown in
/// the body is rethrown from the iterator's `++` (or `begin()`). A generator cannot `co_await`:
/// it is for computing sequences, not for waiting. Move-only; not thread-safe (one consumer).
/// The yielded value is referenced, not copied: it stays valid until the next increment.
template <class T>
class [[nodiscard]] generator {
 public:
  /// The yielded type without reference and cv-qualifiers.
  using value_type = std::remove_cvref_t<T>;
  /// What `*it` gives: `T` itself when it is a reference, otherwise `const value_type&`.
  using reference = std::conditional_t<std::is_reference_v<T>, T, const value_type&>;

  struct promise_type {
    const value_type* current = nullptr;
    std::exception_ptr error;

    generator get_return_object() noexcept {
      return generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    std::suspend_always yield_value(const value_type& v) noexcept {
      current = std::addressof(v);
      return {};
    }
    // A temporary lives in the frame until the generator resumes, so a pointer to it is safe.
    std::suspend_always yield_value(value_type&& v) noexcept {
      current = std::addressof(v);
      return {};
    }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
    template <class U>
    std::suspend_never await_transform(U&&) = delete;  // no co_await inside a generator
  };

  /// An input iterator over the yielded values (from `begin()`); compares equal to `end()` once
  /// the body has finished. Not thread-safe, like the generator.
  class iterator {
   public:
    /// Single pass: the values are produced as the iterator advances.
    using iterator_category = std::input_iterator_tag;
    /// Required by std::input_iterator; never used to measure a distance.
    using difference_type = std::ptrdiff_t;
    /// The yielded type without reference and cv-qualifiers.
    using value_type = generator::value_type;

    iterator() noexcept = default;
    /// @cond
    // Made by begin(); not for users.
    explicit iterator(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}
    /// @endcond

    /// The current value, valid until the next increment.
    reference operator*() const noexcept { return *handle_.promise().current; }
    /// A pointer to the current value, valid until the next increment.
    const value_type* operator->() const noexcept { return handle_.promise().current; }
    /// Resumes the body until its next `co_yield` or its end; rethrows an exception the body
    /// ended with.
    iterator& operator++() {
      advance(handle_);
      return *this;
    }
    /// Same as the prefix `++` (an input iterator has no previous value to return).
    void operator++(int) { ++*this; }
    /// True once the body has finished (or for a default-constructed iterator).
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.handle_ || it.handle_.done();
    }

   private:
    std::coroutine_handle<promise_type> handle_;
  };

  /// Takes over `o`'s coroutine; `o` becomes empty.
  generator(generator&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  /// Destroys the coroutine this generator held, then takes over `o`'s.
  generator& operator=(generator&& o) noexcept {
    if (this != &o) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(o.handle_, {});
    }
    return *this;
  }
  generator(const generator&) = delete;
  generator& operator=(const generator&) = delete;
  ~generator() {
    if (handle_) handle_.destroy();
  }

  /// Runs the body to its first `co_yield`. Call once.
  iterator begin() {
    advance(handle_);
    return iterator(handle_);
  }
  /// The sentinel that an iterator equals once the body has finished.
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  explicit generator(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}

  static void advance(std::coroutine_handle<promise_type> h) {
    h.resume();
    if (h.done() && h.promise().error) {
      std::rethrow_exception(std::exchange(h.promise().error, nullptr));
    }
  }

  std::coroutine_handle<promise_type> handle_;
};

}  // namespace weft
