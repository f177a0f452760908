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
  using value_type = std::remove_cvref_t<T>;
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

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using difference_type = std::ptrdiff_t;
    using value_type = generator::value_type;

    iterator() noexcept = default;
    explicit iterator(std::coroutine_handle<promise_type> h) noexcept : handle_(h) {}

    reference operator*() const noexcept { return *handle_.promise().current; }
    const value_type* operator->() const noexcept { return handle_.promise().current; }
    iterator& operator++() {
      advance(handle_);
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
      return !it.handle_ || it.handle_.done();
    }

   private:
    std::coroutine_handle<promise_type> handle_;
  };

  generator(generator&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
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
