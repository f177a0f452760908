// libFuzzer harness for the process pool's byte format (weft/pool/serialize.hpp).
//
// Input: the first byte picks a type (modulo the number of types below), the rest is a message to
// decode as that type, as a worker decodes a job or the pool decodes a result. Decoding must
// either throw `serial::format_error` or succeed; any other exception, a sanitizer report, or an
// allocation past libFuzzer's -malloc_limit_mb (a length field believed before checking it) is a
// crash, and so is a single allocation of more than 4 times the message (+1 KiB) while decoding
// (a corrupt count trusted before it is checked against what is left). On success:
//   - the value re-encodes to exactly the bytes it was decoded from (the format is canonical),
//   - those bytes decode again, to the same value, consuming them all,
//   - the same bytes but the last are rejected with format_error (no read past the end).
// The job/batch types mirror the worker's decoding of a job payload (name, [count,] arguments,
// no trailing bytes) without the socket framing: the frame header is internal to
// process_pool.cpp and read from a socket, so only the payload codec is fuzzed here.
// shared_buffer is not fuzzed: decoding one adopts a memfd (process_pool.cpp, the whole library).
//
// `serialize_fuzz --write-seeds=DIR` writes valid encodings of each type to DIR (the seed
// corpus in tests/fuzz/corpus/serialize was made that way) and exits.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <sanitizer/allocator_interface.h>

#include <weft/pool/serialize.hpp>

#include "fuzz_check.hpp"
#include "seeds_flag.hpp"

namespace serial = weft::pool::serial;

namespace {

// The largest single allocation while a message is decoded (a malloc hook, beside libFuzzer's).
std::size_t largest_allocation = 0;
bool tracking = false;
void on_malloc(const volatile void*, std::size_t size) {
  if (tracking) largest_allocation = std::max(largest_allocation, size);
}
void on_free(const volatile void*) {}

// An allocation beyond this while decoding `message_size` bytes is out of proportion: a decoded
// element is at most 4 times its encoding (a std::string of 32 bytes for a length of 8), and the
// rest is exceptions' messages and the like.
std::size_t allocation_bound(std::size_t message_size) {
  return 4 * message_size + 1024;
}

// A trivially copyable record, encoded as its bytes.
struct sample {
  std::int64_t x = 0;
  double y = 0;
  char tag[8] = {};
};

// A job as the pool sends it: the function's name, then its arguments.
struct job {
  std::string name;
  std::tuple<int, std::string> args;
};
// A batch (map's chunk): the name, a count, then count argument lists.
struct batch {
  std::string name;
  std::vector<std::vector<std::string>> calls;
};

void put_value(serial::writer& w, const job& j) {
  serial::put<std::string>(w, j.name);
  serial::put<std::tuple<int, std::string>>(w, j.args);
}
void put_value(serial::writer& w, const batch& b) {
  serial::put<std::string>(w, b.name);
  serial::put<std::uint64_t>(w, b.calls.size());
  for (const auto& c : b.calls) serial::put<std::vector<std::string>>(w, c);
}
template <class T>
void put_value(serial::writer& w, const T& value) {
  serial::put<T>(w, value);
}

// The worker's decoding (serve_jobs in process_pool.cpp): trailing bytes are an error.
job take_value(serial::reader& r, std::type_identity<job>) {
  job j;
  j.name = serial::take<std::string>(r);
  j.args = serial::take<std::tuple<int, std::string>>(r);
  if (r.remaining() != 0) throw serial::format_error("weft::pool::serial: trailing bytes in a job");
  return j;
}
batch take_value(serial::reader& r, std::type_identity<batch>) {
  batch b;
  b.name = serial::take<std::string>(r);
  const auto count = serial::take<std::uint64_t>(r);
  // Stored only to check the round trip (the worker runs each call instead): reserved as the
  // codec does, so that push_back's doubling does not count against the allocation bound.
  b.calls.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(count, r.remaining() / 8)));
  // Like the worker, one call after another until the count or the bytes run out (each call
  // takes at least 8 bytes, so a huge count fails quickly).
  for (std::uint64_t i = 0; i < count; ++i) {
    b.calls.push_back(serial::take<std::vector<std::string>>(r));
  }
  if (r.remaining() != 0) throw serial::format_error("weft::pool::serial: trailing bytes in a job");
  return b;
}
template <class T>
T take_value(serial::reader& r, std::type_identity<T>) {
  return serial::take<T>(r);
}

std::string encode(const auto& value) {
  serial::writer w;
  put_value(w, value);
  FUZZ_CHECK(w.fds().empty());
  return std::move(w.bytes());
}

template <class T>
void fuzz_as(std::span<const std::byte> message) {
  std::optional<T> value;
  serial::reader r(message);
  largest_allocation = 0;
  tracking = true;
  bool rejected = false;
  try {
    value.emplace(take_value(r, std::type_identity<T>{}));
  } catch (const serial::format_error&) {
    rejected = true;  // the documented error: fine
  }
  tracking = false;
  FUZZ_CHECK(largest_allocation <= allocation_bound(message.size()));
  if (rejected) return;
  FUZZ_CHECK(r.remaining() <= message.size());
  const std::size_t used = message.size() - r.remaining();

  // Canonical: the value encodes to the very bytes it came from.
  const std::string bytes = encode(*value);
  FUZZ_CHECK(bytes.size() == used);
  FUZZ_CHECK(used == 0 || std::memcmp(bytes.data(), message.data(), used) == 0);

  // Round trip: those bytes decode again, entirely, to the same value (compared by encoding,
  // which also covers doubles whose NaN would not compare equal).
  serial::reader again_reader(std::as_bytes(std::span(bytes)));
  const T again = take_value(again_reader, std::type_identity<T>{});
  FUZZ_CHECK(again_reader.remaining() == 0);
  FUZZ_CHECK(encode(again) == bytes);

  // One byte short is a truncated message: format_error, and no read past the end (its own
  // allocation, so ASan sees an overrun).
  if (used > 0) {
    const std::string shorter = bytes.substr(0, used - 1);
    serial::reader short_reader(std::as_bytes(std::span(shorter)));
    bool short_rejected = false;
    try {
      (void)take_value(short_reader, std::type_identity<T>{});
    } catch (const serial::format_error&) {
      short_rejected = true;
    }
    FUZZ_CHECK(short_rejected);
  }
}

using fuzz_fn = void (*)(std::span<const std::byte>);

const fuzz_fn fuzzers[] = {
    &fuzz_as<std::int32_t>,
    &fuzz_as<bool>,
    &fuzz_as<std::string>,
    &fuzz_as<std::vector<int>>,
    &fuzz_as<std::vector<std::string>>,
    &fuzz_as<std::vector<std::vector<int>>>,
    &fuzz_as<std::vector<std::vector<std::string>>>,
    &fuzz_as<std::tuple<int, std::string, std::uint64_t>>,
    &fuzz_as<std::pair<std::string, std::vector<double>>>,
    &fuzz_as<std::vector<std::tuple<std::string, int, bool>>>,
    &fuzz_as<std::vector<std::pair<std::int16_t, std::string>>>,
    &fuzz_as<std::tuple<bool, double, std::vector<std::uint8_t>>>,
    &fuzz_as<std::vector<std::vector<std::vector<std::string>>>>,
    &fuzz_as<std::vector<sample>>,
    &fuzz_as<job>,
    &fuzz_as<batch>,
    // Elements much larger in memory than their smallest encoding (96 bytes against 24, 64
    // against 64): a corrupt count must not reserve memory out of proportion to the message.
    &fuzz_as<std::vector<std::tuple<std::string, std::string, std::string>>>,
    &fuzz_as<std::vector<std::tuple<std::array<char, 64>>>>,
};
constexpr std::size_t fuzzer_count = std::size(fuzzers);

// ---- the seed corpus

template <class T>
void write_seed(const std::string& dir, std::size_t type, const char* name, const T& value) {
  std::string bytes(1, static_cast<char>(type));
  bytes += encode(value);
  char file[512];
  std::snprintf(file, sizeof file, "%s/%02zu-%s", dir.c_str(), type, name);
  std::FILE* f = std::fopen(file, "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() ||
      std::fclose(f) != 0) {
    std::perror(file);
    std::exit(1);
  }
}

void write_seeds(const std::string& dir) {
  using strings = std::vector<std::string>;
  write_seed(dir, 0, "int", std::int32_t{-123456});
  write_seed(dir, 1, "true", true);
  write_seed(dir, 2, "empty", std::string());
  write_seed(dir, 2, "nul", std::string("with\0nul", 8));
  write_seed(dir, 3, "ints", std::vector<int>{1, -2, 3});
  write_seed(dir, 3, "none", std::vector<int>{});
  write_seed(dir, 4, "strings", strings{"", "a", "bc", ""});
  write_seed(dir, 5, "nested", std::vector<std::vector<int>>{{}, {1}, {2, 3}, {}});
  write_seed(dir, 6, "nested", std::vector<strings>{{"alpha", "b"}, {}, {"", "gamma!"}});
  write_seed(dir, 7, "tuple", std::tuple<int, std::string, std::uint64_t>{7, "seven", 1u << 31});
  write_seed(dir, 8, "pair", std::pair<std::string, std::vector<double>>{"xy", {0.5, -0.25}});
  write_seed(dir, 9, "records",
             std::vector<std::tuple<std::string, int, bool>>{{"a", 1, true}, {"", -1, false}});
  write_seed(dir, 10, "pairs",
             std::vector<std::pair<std::int16_t, std::string>>{{1, "one"}, {-2, ""}});
  write_seed(dir, 11, "mixed",
             std::tuple<bool, double, std::vector<std::uint8_t>>{
                 false, 1e300, std::vector<std::uint8_t>{0, 255, 7}});
  write_seed(dir, 12, "deep", std::vector<std::vector<strings>>{{{"x"}, {}}, {}, {{"y", "zz"}}});
  sample s;
  s.x = -5;
  s.y = 2.5;
  std::memcpy(s.tag, "tagtag!", 8);
  write_seed(dir, 13, "samples", std::vector<sample>{s, sample{}});
  write_seed(dir, 14, "job", job{"work", {9, "argument"}});
  write_seed(dir, 15, "batch", batch{"square", {{"one"}, {}, {"two", "three"}}});
  write_seed(dir, 15, "empty-batch", batch{"f", {}});
  write_seed(dir, 16, "triples",
             std::vector<std::tuple<std::string, std::string, std::string>>{{"a", "", "c"}});
  std::tuple<std::array<char, 64>> block{};
  std::get<0>(block).fill('b');
  write_seed(dir, 17, "blocks", std::vector<std::tuple<std::array<char, 64>>>{block, {}});
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
  weft::fuzzing::write_seeds_if_asked(*argc, *argv, write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto message = std::as_bytes(std::span(data + 1, size - 1));
  fuzzers[data[0] % fuzzer_count](message);
  return 0;
}
