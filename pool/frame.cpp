#include "frame.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace weft::pool::detail {

msghdr receive_message(iovec* iov, std::size_t count, fd_cmsg& control) noexcept {
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  msg.msg_control = control.buffer;
  msg.msg_controllen = sizeof control.buffer;
  return msg;
}

void attach_fds(msghdr& msg, fd_cmsg& control, const std::vector<io::fd>& fds) {
  if (fds.empty()) return;
  if (fds.size() > max_fds_per_frame) {
    throw std::length_error("weft::pool: at most 253 fds fit in one message");
  }
  msg.msg_control = control.buffer;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  auto* out = reinterpret_cast<int*>(CMSG_DATA(c));
  for (std::size_t i = 0; i < fds.size(); ++i) out[i] = fds[i].get();
}

bool collect_fds(msghdr& msg, std::vector<io::fd>& fds) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const auto* in = reinterpret_cast<const int*>(CMSG_DATA(c));
      for (std::size_t i = 0; i < n; ++i) fds.emplace_back(in[i]);
    }
  }
  return (msg.msg_flags & MSG_CTRUNC) == 0;
}

// ---- frame_writer

frame_writer::frame_writer(frame_kind kind, const std::string& payload,
                           const std::vector<io::fd>& fds)
    : payload_(payload) {
  header_.kind = kind;
  header_.size = payload.size();
  header_.fd_count = static_cast<std::uint32_t>(fds.size());
  iov_[0] = {&header_, sizeof header_};
  iov_[1] = {const_cast<char*>(payload.data()), payload.size()};
  msg_.msg_iov = iov_;
  msg_.msg_iovlen = payload.empty() ? 1 : 2;
  attach_fds(msg_, control_, fds);
}

std::span<const char> frame_writer::sent(std::size_t n) noexcept {
  sent_ += n;
  const std::size_t total = sizeof header_ + payload_.size();
  if (sent_ >= total) return {};
  if (sent_ < sizeof header_) {
    return {reinterpret_cast<const char*>(&header_) + sent_, sizeof header_ - sent_};
  }
  return {payload_.data() + (sent_ - sizeof header_), total - sent_};
}

// ---- frame_reader

frame_reader::frame_reader() noexcept {
  iov_[0] = {&header, sizeof header};
  iov_[1] = {first_bytes_, sizeof first_bytes_};
  msg_ = receive_message(iov_, 2, control_);
}

frame_reader::status frame_reader::received(std::size_t n) {
  if (!started_) {
    // The first receive filled the header, then first_bytes_, and brought the fds.
    started_ = true;
    if (!collect_fds(msg_, fds)) return status::malformed;
    header_got_ = std::min(n, sizeof header);
    early_ = n - header_got_;
  } else if (n > want_.size()) {
    return status::malformed;  // a driver that received more than it was asked for
  } else if (header_got_ < sizeof header) {
    header_got_ += n;
  } else {
    payload_got_ += n;
    if (payload_got_ == payload.size()) return status::done;
    want_ = {payload.data() + payload_got_, payload.size() - payload_got_};
    return status::more;
  }
  if (header_got_ < sizeof header) {
    want_ = {reinterpret_cast<char*>(&header) + header_got_, sizeof header - header_got_};
    return status::more;
  }
  return header_complete();
}

frame_reader::status frame_reader::header_complete() {
  const bool known_kind = header.kind == frame_kind::job || header.kind == frame_kind::ok ||
                          header.kind == frame_kind::error || header.kind == frame_kind::batch;
  if (header.magic != frame_magic || !known_kind || header.fd_count != fds.size() ||
      header.size >= max_frame_payload) {
    return status::malformed;
  }
  if (early_ > header.size) return status::malformed;  // more than the frame: out of step
  payload.resize(header.size);
  std::memcpy(payload.data(), first_bytes_, early_);
  payload_got_ = early_;
  if (payload_got_ == payload.size()) return status::done;
  want_ = {payload.data() + payload_got_, payload.size() - payload_got_};
  return status::more;
}

frame_reader::status frame_reader::feed(std::span<const char> bytes, std::size_t& used) {
  used = 0;
  status s = status::more;
  if (!started_ && !bytes.empty()) {
    // The header alone, as if it were the first receive: the bytes after it may be another
    // frame's, which a receive into first_bytes_ would take for this one's payload.
    msg_.msg_controllen = 0;  // no fds came with these bytes
    used = std::min(bytes.size(), sizeof header);
    std::memcpy(&header, bytes.data(), used);
    s = received(used);
  }
  while (s == status::more && used < bytes.size()) {
    const std::size_t n = std::min(bytes.size() - used, want_.size());
    std::memcpy(want_.data(), bytes.data() + used, n);
    used += n;
    s = received(n);
  }
  return s;
}

}  // namespace weft::pool::detail
