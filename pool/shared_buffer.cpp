// weft: shared_buffer (memfd shared memory) and the fds a serial::writer carries.
#include <weft/pool/serialize.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <system_error>

#include "os.hpp"

namespace weft::pool {

namespace {

std::byte* map_shared(int fd, std::size_t size) {
  if (size == 0) return nullptr;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) detail::throw_errno("weft::pool::shared_buffer: mmap");
  return static_cast<std::byte*>(p);
}

}  // namespace

shared_buffer shared_buffer::create(std::size_t size) {
  io::fd fd(::memfd_create("weft-shared-buffer", MFD_CLOEXEC));
  if (!fd) detail::throw_errno("weft::pool::shared_buffer: memfd_create");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    detail::throw_errno("weft::pool::shared_buffer: ftruncate");
  }
  return adopt(std::move(fd), size);
}

shared_buffer shared_buffer::adopt(io::fd memfd, std::size_t size) {
  struct stat st {};
  if (::fstat(memfd.get(), &st) != 0) detail::throw_errno("weft::pool::shared_buffer: fstat");
  if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) < size) {
    throw std::system_error(
        EINVAL, std::generic_category(),
        "weft::pool::shared_buffer: fstat: the memory is smaller than its size");
  }
  shared_buffer b;
  b.data_ = map_shared(memfd.get(), size);
  b.size_ = size;
  b.fd_ = std::move(memfd);
  return b;
}

shared_buffer& shared_buffer::operator=(shared_buffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    fd_ = std::move(other.fd_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

shared_buffer::~shared_buffer() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

shared_buffer shared_buffer::share() const {
  if (!fd_) return {};
  io::fd copy(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 3));
  if (!copy) detail::throw_errno("weft::pool::shared_buffer: dup");
  return adopt(std::move(copy), size_);
}

std::uint32_t serial::writer::put_fd(int fd) {
  io::fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy) detail::throw_errno("weft::pool::serial: dup");
  fds_.push_back(std::move(copy));
  return static_cast<std::uint32_t>(fds_.size() - 1);
}

}  // namespace weft::pool
