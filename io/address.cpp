#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>
#include <cstring>
#include <weft/io/address.hpp>

namespace weft::io {
namespace {

io_error invalid(const char* what) {
  return {std::make_error_code(std::errc::invalid_argument), what};
}

// Appends rather than using operator+ (g++ 12 warns falsely about overlapping memcpy there).
std::string join(std::string_view a, std::string_view b, std::string_view c) {
  std::string out;
  out.reserve(a.size() + b.size() + c.size());
  out.append(a).append(b).append(c);
  return out;
}

// The one place that fills an IP address: `addr` (in_addr or in6_addr) and `port`.
template <class Sockaddr>
socket_address from_sockaddr(const Sockaddr& s) noexcept {
  return socket_address::from_raw(reinterpret_cast<const sockaddr*>(&s), sizeof s);
}
socket_address inet(in_addr addr, std::uint16_t port) noexcept {
  return from_sockaddr(sockaddr_in{
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr = addr, .sin_zero = {}});
}
socket_address inet(in6_addr addr, std::uint16_t port) noexcept {
  return from_sockaddr(sockaddr_in6{.sin6_family = AF_INET6,
                                    .sin6_port = htons(port),
                                    .sin6_flowinfo = 0,
                                    .sin6_addr = addr,
                                    .sin6_scope_id = 0});
}

}  // namespace

socket_address::socket_address() noexcept : storage_{}, length_(0) {
  storage_.ss_family = AF_UNSPEC;
}

result<socket_address> socket_address::ip(std::string_view host, std::uint16_t port) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  char text[INET6_ADDRSTRLEN + 1] = {};
  if (host.empty() || host.size() >= sizeof text) return invalid("parse address");
  std::memcpy(text, host.data(), host.size());
  if (in_addr v4{}; inet_pton(AF_INET, text, &v4) == 1) return inet(v4, port);
  if (in6_addr v6{}; inet_pton(AF_INET6, text, &v6) == 1) return inet(v6, port);
  return invalid("parse address");
}

result<socket_address> socket_address::parse(std::string_view host_and_port) {
  const auto colon = host_and_port.rfind(':');
  if (colon == std::string_view::npos) return invalid("parse address");
  const std::string_view host = host_and_port.substr(0, colon);
  const std::string_view port_text = host_and_port.substr(colon + 1);
  // An IPv6 address needs brackets when a port follows, or "::1:80" would be ambiguous.
  if (host.find(':') != std::string_view::npos && host.front() != '[') {
    return invalid("parse address");
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535 ||
      port_text.empty()) {
    return invalid("parse address");
  }
  return ip(host, static_cast<std::uint16_t>(port));
}

result<socket_address> socket_address::unix_path(std::string_view path) {
  socket_address a;
  auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
  if (path.empty()) return invalid("unix address");
  if (path.size() >= sizeof un->sun_path) {
    return io_error{std::make_error_code(std::errc::filename_too_long), "unix address"};
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  if (path.front() == '@') {
    un->sun_path[0] = '\0';  // abstract: the length, not a terminator, ends the name
    a.length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  } else {
    a.length_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  }
  return a;
}

socket_address socket_address::loopback_v4(std::uint16_t port) noexcept {
  return inet(in_addr{htonl(INADDR_LOOPBACK)}, port);
}

socket_address socket_address::loopback_v6(std::uint16_t port) noexcept {
  return inet(in6addr_loopback, port);
}

socket_address socket_address::from_raw(const sockaddr* addr, socklen_t length) noexcept {
  socket_address a;
  if (length > sizeof a.storage_) length = sizeof a.storage_;
  std::memcpy(&a.storage_, addr, length);
  a.length_ = length;
  return a;
}

std::uint16_t socket_address::port() const noexcept {
  if (storage_.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  }
  if (storage_.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string socket_address::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  switch (storage_.ss_family) {
    case AF_INET:
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, text,
                sizeof text);
      return join(text, ":", std::to_string(port()));
    case AF_INET6:
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, text,
                sizeof text);
      return join("[", text, "]:").append(std::to_string(port()));
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
      const std::size_t offset = offsetof(sockaddr_un, sun_path);
      if (length_ <= offset) return "unix:(unnamed)";
      std::size_t n = length_ - offset;
      if (un->sun_path[0] == '\0')
        return join("unix:@", std::string_view(un->sun_path + 1, n - 1), "");
      return join("unix:", std::string_view(un->sun_path, strnlen(un->sun_path, n)), "");
    }
    default: return "(unspecified)";
  }
}

bool operator==(const socket_address& a, const socket_address& b) noexcept {
  return a.length_ == b.length_ && std::memcmp(&a.storage_, &b.storage_, a.length_) == 0;
}

}  // namespace weft::io
