// weft: buffered reading (lines, delimited records, exact counts) and buffered writing over any
// weft byte stream: tcp_stream, unix_stream, pipe_reader / pipe_writer.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <weft/io/result.hpp>
#include <weft/task.hpp>

namespace weft::io {

/// Reads a byte stream through a buffer: lines, records that end in a delimiter, exact counts.
/// `Stream` is anything with `read(std::span<std::byte>)` giving `result<std::size_t>` (0 at end
/// of stream): `tcp_stream`, `unix_stream`, `pipe_reader`. `buffered_reader reader(stream);`
/// deduces it. The reader refers to the stream, which must outlive it; after handing a stream
/// to a reader, read it only through the reader (the reader may hold bytes read ahead).
///
/// Bad input, by value (never a hang beyond the stream's own wait, nothing silently dropped):
/// - a record longer than `max_line()` bytes (delimiter excluded): the error
///   `std::errc::message_size` ("read_line" / "read_until"), given as soon as that many bytes
///   are buffered without a delimiter; the rest of that record, through its delimiter, is
///   skipped by the next read, which gives the record after it.
/// - the peer closes in the middle of a record: that last, unterminated record is given as it
///   is (as Python's readline and Tokio's lines do), then `std::nullopt`.
/// - the stream's own errors pass through unchanged (operation "recv", "read"...); the bytes
///   buffered before stay buffered.
/// Cancellation: a read cancelled while it waits throws `errc::cancelled` and keeps every byte
/// already buffered (a later call sees them).
/// Thread-safety: one task at a time per reader.
template <class Stream>
class buffered_reader {
 public:
  /// The longest record `read_line`/`read_until` accept by default: 64 KiB.
  static constexpr std::size_t default_max_line = 64 * 1024;

  /// A reader of `stream` reading up to `chunk` bytes per system call (at least 1) and
  /// accepting records up to `max_line` bytes.
  explicit buffered_reader(Stream& stream, std::size_t max_line = default_max_line,
                           std::size_t chunk = 8192)
      : stream_(&stream), max_line_(max_line), chunk_(std::max<std::size_t>(chunk, 1)) {}

  /// The next line, without its "\n" or "\r\n"; `std::nullopt` at the end of the stream. A
  /// last line without a newline is given as it is. Errors: see the class comment.
  task<result<std::optional<std::string>>> read_line() {
    auto r = co_await read_record("\n", "read_line");
    if (r && *r && !(*r)->empty() && (*r)->back() == '\r') (*r)->pop_back();
    co_return r;
  }

  /// The bytes before the next `delimiter` (which is consumed, not included); `std::nullopt` at
  /// the end of the stream. An empty delimiter is `std::errc::invalid_argument`. Errors: see the
  /// class comment. `delimiter` is copied before the first suspension.
  task<result<std::optional<std::string>>> read_until(std::string delimiter) {
    co_return co_await read_record(std::move(delimiter), "read_until");
  }

  /// Fills `buffer` exactly. Errors: `errc::end_of_stream` ("read_exact") when the stream ends
  /// first (the bytes that came are at the front of `buffer`), or the stream's errors.
  task<result<void>> read_exact(std::span<std::byte> buffer) {
    std::size_t done = take(buffer);
    while (done < buffer.size()) {
      auto n = co_await fill();
      if (!n) co_return n.full_error();
      if (*n == 0) co_return io_error{make_error_code(errc::end_of_stream), "read_exact"};
      done += take(buffer.subspan(done));
    }
    co_return result<void>{};
  }

  /// Bytes read ahead and not yet given out.
  std::size_t buffered() const noexcept { return end_ - begin_; }
  /// The longest record accepted (delimiter excluded).
  std::size_t max_line() const noexcept { return max_line_; }
  /// Sets the longest record accepted.
  void set_max_line(std::size_t bytes) noexcept { max_line_ = bytes; }

 private:
  task<result<std::optional<std::string>>> read_record(std::string delimiter, const char* what) {
    if (delimiter.empty()) {
      co_return io_error{std::make_error_code(std::errc::invalid_argument), what};
    }
    std::size_t scanned = 0;  // bytes after begin_ known to start no delimiter
    for (;;) {
      const std::string_view data = view();
      const std::size_t found = data.find(delimiter, scanned);
      // A delimiter may begin in the last delimiter.size() - 1 bytes: keep those for the next scan.
      const std::size_t keep = std::min(data.size(), delimiter.size() - 1);
      if (skipping_) {  // dropping the rest of a record that was too long
        consume(found == std::string_view::npos ? data.size() - keep : found + delimiter.size());
        skipping_ = found == std::string_view::npos;
        scanned = 0;
        if (!skipping_) continue;
      } else if (found != std::string_view::npos && found <= max_line_) {
        std::string record(data.substr(0, found));
        consume(found + delimiter.size());
        co_return std::optional<std::string>(std::move(record));
      } else if (found != std::string_view::npos) {  // complete but too long: drop it whole
        consume(found + delimiter.size());
        co_return too_long(what);
      } else if (data.size() - keep > max_line_) {  // too long already: drop it, skip the rest
        consume(data.size() - keep);
        skipping_ = true;
        co_return too_long(what);
      } else {
        scanned = data.size() - keep;
      }
      auto n = co_await fill();
      if (!n) co_return n.full_error();
      if (*n == 0) co_return end_of_stream();
    }
  }

  static io_error too_long(const char* what) noexcept {
    return {std::make_error_code(std::errc::message_size), what};
  }

  // At the end of the stream: an unterminated last record is given as it is, then nullopt.
  std::optional<std::string> end_of_stream() {
    std::optional<std::string> last;
    if (!skipping_ && buffered() != 0) last.emplace(view());
    skipping_ = false;
    consume(buffered());
    return last;
  }

  std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(buffer_.data()) + begin_, end_ - begin_};
  }
  void consume(std::size_t n) noexcept {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  std::size_t take(std::span<std::byte> out) noexcept {
    const std::size_t n = std::min(out.size(), buffered());
    if (n != 0) std::memcpy(out.data(), buffer_.data() + begin_, n);
    consume(n);
    return n;
  }
  // One read of up to chunk_ bytes after the buffered ones; gives the count (0: end).
  task<result<std::size_t>> fill() {
    if (begin_ != 0 && buffer_.size() - end_ < chunk_) {  // slide the data to the front
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buffer_.size() - end_ < chunk_) buffer_.resize(end_ + chunk_);
    auto n = co_await stream_->read(std::span<std::byte>(buffer_.data() + end_, chunk_));
    if (n) end_ += *n;  // a cancelled read throws before this: nothing was added
    co_return n;
  }

  Stream* stream_;
  std::size_t max_line_;
  std::size_t chunk_;
  std::vector<std::byte> buffer_;
  std::size_t begin_ = 0;  // buffer_[begin_, end_) holds the bytes read ahead
  std::size_t end_ = 0;
  bool skipping_ = false;  // dropping the rest of a record that was too long
};

/// Writes a byte stream through a buffer: small writes gather in memory and go out in one
/// system call when the buffer fills or at `flush()`. `Stream` is anything with
/// `write_all(std::span<const std::byte>)` giving `result<void>`: `tcp_stream`, `unix_stream`,
/// `pipe_writer`. The stream must outlive the writer. Bytes still buffered when the writer is
/// destroyed are dropped (a destructor cannot await): call `flush()` first.
/// Errors: the stream's (EPIPE, ECONNRESET...), by value; after an error the buffered bytes
/// are dropped (some prefix may have been sent, as with `write_all`).
/// Thread-safety: one task at a time per writer.
template <class Stream>
class buffered_writer {
 public:
  /// A writer of `stream` that gathers up to `capacity` bytes before sending.
  explicit buffered_writer(Stream& stream, std::size_t capacity = 8192)
      : stream_(&stream), capacity_(std::max<std::size_t>(capacity, 1)) {}

  /// Appends `bytes`; sends what is buffered when the buffer would overflow (and `bytes` at once
  /// when it is at least as large as the buffer). Errors: the stream's.
  /// `bytes` must stay valid until the co_await returns.
  task<result<void>> write(std::string_view bytes) {
    if (buffer_.size() + bytes.size() > capacity_) {
      if (auto r = co_await flush(); !r) co_return r;
    }
    if (bytes.size() >= capacity_) co_return co_await send(bytes);
    buffer_.append(bytes);
    co_return result<void>{};
  }

  /// Sends every buffered byte. Errors: the stream's.
  task<result<void>> flush() {
    if (buffer_.empty()) co_return result<void>{};
    std::string out;
    out.swap(buffer_);  // a failed or cancelled send drops it, as documented
    co_return co_await send(out);
  }

  /// Bytes written and not yet sent.
  std::size_t buffered() const noexcept { return buffer_.size(); }

 private:
  task<result<void>> send(std::string_view bytes) {
    co_return co_await stream_->write_all(std::as_bytes(std::span(bytes.data(), bytes.size())));
  }

  Stream* stream_;
  std::size_t capacity_;
  std::string buffer_;
};

}  // namespace weft::io
