#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <memory>
#include <optional>
#include <string>
#include <weft/blocking.hpp>
#include <weft/io/resolve.hpp>
#include <weft/io/socket.hpp>

namespace weft::io {
namespace {

class gai_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "getaddrinfo"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

io_error gai_error(int code) noexcept {
  return {std::error_code(code, resolve_category()), "resolve"};
}

bool is_invalid_tld(std::string_view host) {
  constexpr std::string_view tld = ".invalid";
  while (!host.empty() && host.back() == '.') host.remove_suffix(1);  // "x.invalid." is absolute
  if (host == "invalid") return true;
  if (host.size() < tld.size()) return false;
  std::string tail(host.substr(host.size() - tld.size()));
  std::transform(tail.begin(), tail.end(), tail.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return tail == tld;
}

struct addrinfo_deleter {
  void operator()(addrinfo* a) const noexcept { ::freeaddrinfo(a); }
};

// Runs on a blocking pool thread: getaddrinfo may read files and wait for DNS.
result<std::vector<socket_address>> lookup(const std::string& host, std::uint16_t port,
                                           address_family family) {
  addrinfo hints{};
  hints.ai_family = family == address_family::ipv4   ? AF_INET
                    : family == address_family::ipv6 ? AF_INET6
                                                     : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* raw = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
  if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY || rc == EAI_NODATA) {
    // AI_ADDRCONFIG hides every address on a machine with loopback only: ask again without it.
    hints.ai_flags = 0;
    rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &raw);
  }
  if (rc == EAI_SYSTEM) return io_error{std::error_code(errno, std::generic_category()), "resolve"};
  if (rc != 0) return gai_error(rc);
  std::unique_ptr<addrinfo, addrinfo_deleter> list(raw);
  std::vector<socket_address> out;
  for (const addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    auto address = socket_address::from_raw(a->ai_addr, a->ai_addrlen);
    if (std::find(out.begin(), out.end(), address) == out.end()) out.push_back(address);
  }
  if (out.empty()) return gai_error(EAI_NONAME);
  return out;
}

bool family_matches(const socket_address& a, address_family family) {
  return family == address_family::any ||
         a.family() == (family == address_family::ipv4 ? AF_INET : AF_INET6);
}

}  // namespace

const std::error_category& resolve_category() noexcept {
  static const gai_category category;
  return category;
}

task<result<std::vector<socket_address>>> resolve(std::string host, std::uint16_t port,
                                                  address_family family) {
  if (auto numeric = socket_address::ip(host, port)) {
    if (!family_matches(*numeric, family)) co_return gai_error(EAI_ADDRFAMILY);
    co_return std::vector<socket_address>{*numeric};
  }
  if (host.size() > 253 || host.find('\0') != std::string::npos) {
    co_return io_error{std::make_error_code(std::errc::invalid_argument), "resolve"};
  }
  if (host.empty() || is_invalid_tld(host)) co_return gai_error(EAI_NONAME);
  auto job = [name = std::move(host), port, family] { return lookup(name, port, family); };
  co_return co_await spawn_blocking(std::move(job));
}

}  // namespace weft::io

namespace weft::io {

task<result<tcp_stream>> tcp_stream::connect(std::vector<socket_address> addresses) {
  std::optional<io_error> last;
  for (const socket_address& a : addresses) {
    auto s = co_await connect(a);
    if (s) co_return s;
    last = s.full_error();
  }
  if (last) co_return *last;
  co_return io_error{std::make_error_code(std::errc::invalid_argument), "connect"};  // none given
}

task<result<tcp_stream>> tcp_stream::connect(std::string host, std::uint16_t port) {
  auto addresses = co_await resolve(std::move(host), port);
  if (!addresses) co_return addresses.full_error();
  co_return co_await connect(std::move(*addresses));
}

}  // namespace weft::io
