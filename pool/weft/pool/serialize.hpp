// weft: the byte format of a process pool's arguments and results, and shared memory.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <weft/io/fd.hpp>

namespace weft::pool {

/// A block of memory shared between processes (like Python's multiprocessing.shared_memory):
/// a memfd mapped MAP_SHARED. Passed to a process pool job as an argument (or returned as its
/// result), it travels as a file descriptor over the worker's socket, not as bytes, so a large
/// input costs no copy: both processes map the same pages, and what one writes the other sees.
///
/// Nothing is left behind when processes die: the memory has no name and is freed when the last
/// mapping and fd are gone. Move-only; `share()` maps the same memory again.
/// Thread-safety: the object is used by one thread at a time; the bytes themselves are plain
/// shared memory, so concurrent writers (threads or processes) must synchronize as with any
/// memory.
class shared_buffer {
 public:
  shared_buffer() noexcept = default;
  /// A new zero-filled buffer of `size` bytes. Errors: throws `std::system_error`
  /// ("memfd_create", "ftruncate", "mmap"), ENOMEM/EMFILE typically.
  static shared_buffer create(std::size_t size);
  /// Maps the memory behind `memfd` (taking ownership); used when a buffer arrives from
  /// another process. Errors: as `create`, and EINVAL ("fstat") when the memfd is smaller than
  /// `size` (touching the missing pages would kill the process with SIGBUS).
  static shared_buffer adopt(io::fd memfd, std::size_t size);

  /// Takes over `other`'s mapping and memfd; `other` becomes empty.
  shared_buffer(shared_buffer&& other) noexcept
      : fd_(std::move(other.fd_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  /// Unmaps this buffer's memory and closes its memfd, then takes over `other`'s.
  shared_buffer& operator=(shared_buffer&& other) noexcept;
  shared_buffer(const shared_buffer&) = delete;
  shared_buffer& operator=(const shared_buffer&) = delete;
  ~shared_buffer();

  /// Another mapping of the same memory (a dup of the fd). Errors: as `create`.
  shared_buffer share() const;

  /// The first byte of the mapping (null for an empty buffer).
  std::byte* data() const noexcept { return data_; }
  /// The size in bytes (0 for an empty buffer).
  std::size_t size() const noexcept { return size_; }
  /// The mapped bytes, `{data(), size()}`.
  std::span<std::byte> bytes() const noexcept { return {data_, size_}; }
  /// The memfd (-1 for an empty buffer).
  int native_handle() const noexcept { return fd_.get(); }
  /// True unless the buffer is empty (default-constructed or moved from).
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

 private:
  io::fd fd_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

namespace serial {

/// Thrown when bytes received from another process do not decode (truncated or corrupt).
class format_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Collects the bytes (and the file descriptors, for shared buffers) of one message.
/// Not thread-safe.
class writer {
 public:
  /// Appends `size` bytes from `data`. Throws std::bad_alloc.
  void put_bytes(const void* data, std::size_t size) {
    const auto* p = static_cast<const char*>(data);
    bytes_.append(p, size);
  }
  /// Appends the bytes of `value`, a trivially copyable object, as they are in memory (the
  /// reader is on the same machine). Throws std::bad_alloc.
  template <class T>
  void put_raw(const T& value) {
    put_bytes(&value, sizeof value);
  }
  /// Adds a copy of `fd` (dup'ed, O_CLOEXEC) to send with the message; gives its index among
  /// the message's fds. Errors: throws `std::system_error` ("dup") when out of descriptors.
  std::uint32_t put_fd(int fd);
  /// The message's bytes so far.
  std::string& bytes() noexcept { return bytes_; }
  /// The message's bytes so far.
  const std::string& bytes() const noexcept { return bytes_; }
  /// The fds to send with the message, in the order of the indexes `put_fd` gave.
  std::vector<io::fd>& fds() noexcept { return fds_; }
  /// The fds to send with the message, in the order of the indexes `put_fd` gave.
  const std::vector<io::fd>& fds() const noexcept { return fds_; }

 private:
  std::string bytes_;
  std::vector<io::fd> fds_;
};

/// Decodes one message. Every read checks the bounds and throws `format_error` when the
/// message is too short, so corrupt input is an error, never an out-of-bounds read.
/// Not thread-safe.
class reader {
 public:
  /// Reads `bytes`, which must outlive the reader; `fds` are the descriptors that came with the
  /// message (null: none), from which `take_fd` takes ownership.
  reader(std::span<const std::byte> bytes, std::vector<io::fd>* fds = nullptr) noexcept
      : bytes_(bytes), fds_(fds) {}

  /// The next `size` bytes (a view into the message). Throws `format_error` when fewer remain.
  std::span<const std::byte> take_bytes(std::size_t size) {
    if (size > bytes_.size() - pos_) throw format_error("weft::pool::serial: message truncated");
    auto out = bytes_.subspan(pos_, size);
    pos_ += size;
    return out;
  }
  /// The next `sizeof(T)` bytes as a `T` (see `writer::put_raw`). Throws `format_error` when
  /// fewer remain, or for a bool byte that is neither 0 nor 1.
  template <class T>
  T take_raw() {
    std::array<std::byte, sizeof(T)> raw;
    std::memcpy(raw.data(), take_bytes(sizeof(T)).data(), sizeof(T));
    if constexpr (std::is_same_v<T, bool>) {
      // Any byte but 0 and 1 is not a bool: reading it as one would be undefined behaviour.
      if (raw[0] != std::byte{0} && raw[0] != std::byte{1}) {
        throw format_error("weft::pool::serial: a bool that is neither 0 nor 1");
      }
    }
    return std::bit_cast<T>(raw);  // no default constructor needed
  }
  /// Takes ownership of the fd at `index` among the message's fds.
  io::fd take_fd(std::uint32_t index) {
    if (fds_ == nullptr || index >= fds_->size() || !(*fds_)[index]) {
      throw format_error(
          "weft::pool::serial: message refers to a file descriptor it did not carry");
    }
    return std::move((*fds_)[index]);
  }
  /// How many bytes are left to read.
  std::size_t remaining() const noexcept { return bytes_.size() - pos_; }

 private:
  std::span<const std::byte> bytes_;
  std::size_t pos_ = 0;
  std::vector<io::fd>* fds_;
};

/// How a type crosses a process boundary. Specialized below for trivially copyable types
/// (their bytes), std::string, std::vector, std::pair and std::tuple of supported types, and
/// shared_buffer; any other
/// type has `supported == false`, and the pool refuses it at compile time.
template <class T, class = void>
struct codec {
  /// Whether `T` can be passed: false here, true in the specializations, which also have
  /// `static void put(writer&, const T&)`, `static T take(reader&)` and
  /// `static constexpr std::size_t min_size`, the fewest bytes an encoded `T` takes (at least 1:
  /// a vector's decoder rejects a count of elements that cannot fit in what is left, and so never
  /// reserves memory out of proportion to the message).
  static constexpr bool supported = false;
};

/// @cond
// The specializations are the format's implementation; the list of supported types is on
// `codec` and `serializable_v`.

// Pointers and views are trivially copyable, but their bytes mean nothing in another process.
template <class T>
inline constexpr bool is_address_like_v =
    std::is_pointer_v<T> || std::is_member_pointer_v<T> || std::is_same_v<T, std::string_view> ||
    std::is_same_v<T, std::nullptr_t>;

template <class T>
struct codec<T, std::enable_if_t<std::is_trivially_copyable_v<T> && !is_address_like_v<T> &&
                                 !std::is_array_v<T>>> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = sizeof(T);
  static void put(writer& w, const T& value) { w.put_raw(value); }
  static T take(reader& r) { return r.take_raw<T>(); }
};

template <>
struct codec<std::string> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = sizeof(std::uint64_t);  // the length
  static void put(writer& w, const std::string& s) {
    w.put_raw<std::uint64_t>(s.size());
    w.put_bytes(s.data(), s.size());
  }
  static std::string take(reader& r) {
    const auto size = r.take_raw<std::uint64_t>();
    if (size > r.remaining())
      throw format_error("weft::pool::serial: string longer than its message");
    auto bytes = r.take_bytes(static_cast<std::size_t>(size));
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
};

template <class T>
struct codec<std::vector<T>, std::enable_if_t<codec<T>::supported && !std::is_same_v<T, bool>>> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = sizeof(std::uint64_t);  // the count
  static void put(writer& w, const std::vector<T>& v) {
    w.put_raw<std::uint64_t>(v.size());
    if constexpr (std::is_trivially_copyable_v<T>) {
      w.put_bytes(v.data(), v.size() * sizeof(T));
    } else {
      for (const T& item : v) codec<T>::put(w, item);
    }
  }
  static std::vector<T> take(reader& r) {
    const auto count = r.take_raw<std::uint64_t>();
    // Every element takes at least min_size bytes, so a count that cannot fit in what is left
    // is corrupt. Checked before reserving: the memory reserved is then at most what is left
    // times sizeof(T) / min_size (4 for strings), not times sizeof(T) (found by
    // tests/fuzz/serialize_fuzz: a 1 MiB message reserved 96 MiB for tuples of 3 strings).
    static_assert(codec<T>::min_size > 0);
    if (count > r.remaining() / codec<T>::min_size) {
      throw format_error("weft::pool::serial: vector longer than its message");
    }
    std::vector<T> v;
    if constexpr (std::is_trivially_copyable_v<T>) {
      v.resize(static_cast<std::size_t>(count));
      auto bytes = r.take_bytes(v.size() * sizeof(T));
      if (!bytes.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
    } else {
      v.reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) v.push_back(codec<T>::take(r));
    }
    return v;
  }
};

template <class... Ts>
struct codec<std::tuple<Ts...>, std::enable_if_t<(codec<Ts>::supported && ...)>> {
  static constexpr bool supported = true;
  // At least 1: a vector of empty tuples, which encode to nothing, stays bounded by what is left.
  static constexpr std::size_t min_size =
      std::max<std::size_t>(1, (std::size_t{0} + ... + codec<Ts>::min_size));
  static void put(writer& w, const std::tuple<Ts...>& t) {
    std::apply([&](const Ts&... items) { (codec<Ts>::put(w, items), ...); }, t);
  }
  static std::tuple<Ts...> take(reader& r) {
    return std::tuple<Ts...>{codec<Ts>::take(r)...};  // braces: decoded left to right
  }
};

template <class A, class B>
struct codec<std::pair<A, B>, std::enable_if_t<codec<A>::supported && codec<B>::supported &&
                                               !std::is_trivially_copyable_v<std::pair<A, B>>>> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = codec<A>::min_size + codec<B>::min_size;
  static void put(writer& w, const std::pair<A, B>& p) {
    codec<A>::put(w, p.first);
    codec<B>::put(w, p.second);
  }
  static std::pair<A, B> take(reader& r) {
    A first = codec<A>::take(r);
    return {std::move(first), codec<B>::take(r)};
  }
};

template <>
struct codec<shared_buffer> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = sizeof(std::uint64_t) + sizeof(std::uint32_t);
  static void put(writer& w, const shared_buffer& b) {
    w.put_raw<std::uint64_t>(b.size());
    w.put_raw<std::uint32_t>(b ? w.put_fd(b.native_handle()) : UINT32_MAX);
  }
  static shared_buffer take(reader& r) {
    const auto size = r.take_raw<std::uint64_t>();
    const auto index = r.take_raw<std::uint32_t>();
    if (index == UINT32_MAX) return {};
    return shared_buffer::adopt(r.take_fd(index), static_cast<std::size_t>(size));
  }
};
/// @endcond

/// True for the types a process pool can pass: trivially copyable types other than pointers
/// and views, std::string, shared_buffer, and std::vector, std::pair and std::tuple of any of
/// these (nested too; not std::vector<bool>, which has no contiguous storage).
template <class T>
inline constexpr bool serializable_v = codec<std::remove_cvref_t<T>>::supported;

/// Appends the encoding of `value` to `w` (`T` must be `serializable_v`). Throws
/// std::bad_alloc, and `std::system_error` ("dup") for a shared buffer's fd.
template <class T>
void put(writer& w, const T& value) {
  codec<T>::put(w, value);
}
/// Decodes a `T` from `r` (`T` must be `serializable_v`). Throws `format_error` for a truncated
/// or corrupt message, and what `shared_buffer::adopt` throws for a shared buffer.
template <class T>
T take(reader& r) {
  return codec<T>::take(r);
}

}  // namespace serial
}  // namespace weft::pool
