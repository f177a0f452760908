// weft: socket addresses (IPv4, IPv6, Unix).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include <weft/io/result.hpp>

namespace weft::io {

/// A socket address: IPv4, IPv6 or a Unix-domain path, stored by value (a sockaddr_storage).
///
/// Only numeric addresses are parsed: weft does no name resolution, so parsing never blocks.
/// A plain value type; not synchronized.
class socket_address {
 public:
  /// An empty address (family AF_UNSPEC).
  socket_address() noexcept;

  /// Parses a numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "[::1]") with a port.
  /// Errors: `EINVAL` ("parse address") when `host` is not a numeric address.
  static result<socket_address> ip(std::string_view host, std::uint16_t port);

  /// Parses "HOST:PORT" ("127.0.0.1:8080", "[::1]:8080").
  /// Errors: `EINVAL` ("parse address") for anything else, including a port above 65535.
  static result<socket_address> parse(std::string_view host_and_port);

  /// A Unix-domain stream address. A leading '@' makes it abstract (Linux).
  /// Errors: `ENAMETOOLONG` ("unix address") when the path does not fit sun_path.
  static result<socket_address> unix_path(std::string_view path);

  /// The IPv4 loopback address with `port`: `127.0.0.1:port`.
  static socket_address loopback_v4(std::uint16_t port) noexcept;
  /// The IPv6 loopback address with `port`: `[::1]:port`.
  static socket_address loopback_v6(std::uint16_t port) noexcept;

  /// Wraps what accept/getsockname/recvmsg wrote.
  static socket_address from_raw(const sockaddr* addr, socklen_t length) noexcept;

  /// AF_INET, AF_INET6, AF_UNIX, or AF_UNSPEC for an empty address.
  int family() const noexcept { return storage_.ss_family; }
  /// The port of an IP address (0 for other families).
  std::uint16_t port() const noexcept;
  /// "127.0.0.1:80", "[::1]:80", "unix:/path" or "unix:@abstract".
  std::string to_string() const;

  /// The address as a sockaddr, for the socket system calls.
  const sockaddr* data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  /// The storage as a sockaddr, for calls that fill it in (see `capacity()`).
  sockaddr* data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  /// The length of the address in bytes (what the socket calls take as `socklen_t`).
  socklen_t size() const noexcept { return length_; }
  /// For calls that fill the address in: the capacity, then set_size() with what they wrote.
  static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }
  /// Sets the length to what a call that filled `data()` in reported.
  void set_size(socklen_t length) noexcept { length_ = length; }

  /// Byte-wise equality of the two addresses (same length, same bytes).
  friend bool operator==(const socket_address& a, const socket_address& b) noexcept;

 private:
  sockaddr_storage storage_;
  socklen_t length_;
};

}  // namespace weft::io
