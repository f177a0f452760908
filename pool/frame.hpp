// weft (private to pool/): the frame codec, the one definition of the messages between a pool
// and its workers. Sans I/O: the worker's blocking loop and the pool's ring exchange each move
// the bytes their own way, and ask the codec what to send and where to receive next.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <weft/io/fd.hpp>

namespace weft::pool::detail {

inline constexpr std::uint32_t frame_magic = 0x74666577;  // "weft"
inline constexpr std::size_t max_fds_per_frame = 253;     // SCM_MAX_FD
/// A payload of this size or more is corrupt, not a job: refused before any allocation.
inline constexpr std::uint64_t max_frame_payload = std::uint64_t{1} << 40;
/// The first bytes of a payload arrive with the header in one receive: a small job or result
/// (the common case) costs one system call, not two.
inline constexpr std::size_t inline_payload = 4096;

/// A batch (map's chunks) is a job whose payload is the name, a count, then count argument
/// lists; the reply is count results, one after the other.
enum class frame_kind : std::uint32_t { job = 1, ok = 2, error = 3, batch = 4 };

/// What precedes every payload on the stream. The fds of a frame travel with its first byte.
struct frame_header {
  std::uint32_t magic = frame_magic;
  frame_kind kind = frame_kind::job;
  std::uint64_t size = 0;  // of the payload
  std::uint32_t fd_count = 0;
  std::uint32_t reserved = 0;
};

/// Control-message room for the most fds a frame (or a fork server reply) may carry.
struct fd_cmsg {
  alignas(cmsghdr) char buffer[CMSG_SPACE(sizeof(int) * max_fds_per_frame)];
};

/// A message to receive into `iov` (`count` pieces), with room in `control` for the most fds a
/// frame may carry. `iov` and `control` must outlive the receive.
msghdr receive_message(iovec* iov, std::size_t count, fd_cmsg& control) noexcept;

/// Attaches `fds` to `msg` as one SCM_RIGHTS control message in `control` (nothing when empty).
void attach_fds(msghdr& msg, fd_cmsg& control, const std::vector<io::fd>& fds);

/// Takes the fds a received message carried (they are owned from here on, even on failure).
/// False when the control data was cut short.
bool collect_fds(msghdr& msg, std::vector<io::fd>& fds);

/// Sends one frame: `first()` goes out with sendmsg (the header, the payload and the fds);
/// after each send, `sent(n)` gives the bytes still to go as plain sends (empty: all sent).
/// Refers to `payload` and to itself (the message points into the object): neither may move
/// while the frame is sent. Not thread-safe.
class frame_writer {
 public:
  frame_writer(frame_kind kind, const std::string& payload, const std::vector<io::fd>& fds);
  frame_writer(const frame_writer&) = delete;
  frame_writer& operator=(const frame_writer&) = delete;

  /// The first message: everything, with the fds attached to the first byte.
  msghdr* first() noexcept { return &msg_; }
  /// Counts `n` more bytes sent; gives the rest of the header, or of the payload, to send next.
  std::span<const char> sent(std::size_t n) noexcept;

 private:
  frame_header header_;
  const std::string& payload_;
  iovec iov_[2];
  fd_cmsg control_;
  msghdr msg_{};
  std::size_t sent_ = 0;
};

/// Receives one frame from a byte stream: `first()` is received with recvmsg (the header, up
/// to `inline_payload` bytes of the payload, and the fds); then, while `received(n)` answers
/// `more`, `want()` is where the next plain receive goes. A frame is refused (`malformed`)
/// when its fds were cut short, its magic or kind is wrong, its fd count is not the fds that
/// came, its size is `max_frame_payload` or more, or more bytes came than the frame holds.
/// Refers to itself: it may not move while a receive is in flight. Not thread-safe.
class frame_reader {
 public:
  enum class status { more, done, malformed };

  frame_reader() noexcept;
  frame_reader(const frame_reader&) = delete;
  frame_reader& operator=(const frame_reader&) = delete;

  /// The first message to receive into.
  msghdr* first() noexcept { return &msg_; }
  /// Where the next receive goes (after `received` answered `more`).
  std::span<char> want() noexcept { return want_; }
  /// Counts `n` (> 0) bytes received by the last receive; the first call also takes its fds.
  status received(std::size_t n);
  /// Feeds bytes held in memory, as receives would deliver them (without fds): a frame read
  /// from a buffer. Gives how many of `bytes` the frame took (the rest belongs to what follows).
  status feed(std::span<const char> bytes, std::size_t& used);

  frame_header header;      ///< valid once `received` passed the header
  std::string payload;      ///< whole once `received` answered `done`
  std::vector<io::fd> fds;  ///< the fds that came with the first bytes

 private:
  status header_complete();

  char first_bytes_[inline_payload];
  iovec iov_[2];
  fd_cmsg control_;
  msghdr msg_{};
  bool started_ = false;
  std::size_t header_got_ = 0;
  std::size_t payload_got_ = 0;
  std::size_t early_ = 0;  // payload bytes that came with the header, in first_bytes_
  std::span<char> want_;
};

}  // namespace weft::pool::detail
