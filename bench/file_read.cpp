// Reads a file sequentially in 1 MiB blocks through weft's io_uring file API, for
// bench/servers.py's file suite (compared with `dd if=PATH of=/dev/null bs=1M`).
//
//   ./file_read PATH
//
// One task, one buffer, one read in flight at a time, as dd does. The clock runs from the
// open to the last read. The last line is machine-readable:
// bytes=<N> seconds=<S> bytes_per_s=<X>. Exit status 0 on success, 1 on an I/O error, 2 on
// bad arguments.
#include <fcntl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <span>

#include <fmt/core.h>
#include <weft/weft.hpp>

namespace {

constexpr std::size_t block_size = 1 << 20;
// Page-aligned, as dd's buffer is. Measured on the AMD EPYC of the bench machine: the kernel's
// copy from the page cache into a buffer at a 16-byte offset (what malloc gives for 1 MiB) ran
// about 5x slower than into a 64-byte-aligned one, for read(2) and io_uring alike.
constexpr std::size_t alignment = 4096;

weft::task<int> read_whole(const char* path) {
  const std::unique_ptr<std::byte[], void (*)(void*)> block(
      static_cast<std::byte*>(std::aligned_alloc(alignment, block_size)), std::free);
  if (!block) {
    fmt::print(stderr, "file_read: out of memory\n");
    co_return 1;
  }
  const std::span<std::byte> buffer(block.get(), block_size);
  const auto start = std::chrono::steady_clock::now();
  auto opened = co_await weft::io::file::open(path, O_RDONLY);
  if (!opened) {
    fmt::print(stderr, "file_read: {}: {}\n", path, opened.message());
    co_return 1;
  }
  const weft::io::file& f = *opened;
  std::uint64_t offset = 0;
  for (;;) {
    auto n = co_await f.read_at(buffer, offset);
    if (!n) {
      fmt::print(stderr, "file_read: {}: {}\n", path, n.message());
      co_return 1;
    }
    if (*n == 0) break;  // end of file
    offset += *n;
  }
  const std::chrono::duration<double> wall = std::chrono::steady_clock::now() - start;
  fmt::print("bytes={} seconds={:.6f} bytes_per_s={:.0f}\n", offset, wall.count(),
             static_cast<double>(offset) / wall.count());
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: file_read PATH\n");
    return 2;
  }
  try {
    return weft::run(read_whole(argv[1]));
  } catch (const std::exception& e) {
    fmt::print(stderr, "file_read: {}\n", e.what());
    return 1;
  }
}
