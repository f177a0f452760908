// weft: name resolution (host names to socket addresses) without blocking an executor thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <weft/io/address.hpp>
#include <weft/io/result.hpp>
#include <weft/task.hpp>

namespace weft::io {

/// The category of getaddrinfo's errors (`EAI_NONAME`, `EAI_AGAIN`...; gai_strerror gives the
/// messages). `resolve` reports them with the operation name "resolve". Thread-safe.
const std::error_category& resolve_category() noexcept;

/// Which address families `resolve` asks for.
enum class address_family {
  any,   ///< IPv6 and IPv4 (AF_UNSPEC), in the order the system's resolver prefers
  ipv4,  ///< IPv4 only (AF_INET)
  ipv6,  ///< IPv6 only (AF_INET6)
};

/// Resolves `host` (a name such as "localhost", or a numeric IPv4/IPv6 address) to the TCP
/// addresses with `port`, in the order the system's resolver prefers (RFC 6724), without
/// duplicates. `co_await weft::io::resolve("localhost", 8080)`.
///
/// How: a numeric address is parsed on the spot; a name goes to getaddrinfo(3) on weft's
/// blocking pool (`spawn_blocking`), so the executor thread never blocks and the answer is the
/// one every other program on the machine gets (/etc/hosts, nsswitch, DNS). See ARCHITECTURE.md
/// ("Name resolution") for why not c-ares.
///
/// Errors (by value, operation "resolve"): codes of `resolve_category()`: `EAI_NONAME` for a
/// name that does not exist (also, at once and without asking DNS, a name under ".invalid"
/// (RFC 6761) and an empty name), `EAI_AGAIN` when the DNS server does not answer (bounded by
/// the resolver's own timeouts, resolv.conf's `timeout`/`attempts`), ...; `EINVAL` (generic)
/// for a host name longer than 253 bytes or containing a NUL byte.
/// Cancellation: a stop requested before the lookup starts on a pool thread throws
/// `errc::cancelled` at once; one that has started cannot be interrupted and is waited for (as
/// for any `spawn_blocking` job). Throws `errc::no_runtime` outside a weft executor.
/// `host` is taken by value: the task is lazy, so a view could dangle before it runs.
/// Thread-safety: callable from any task on any executor.
task<result<std::vector<socket_address>>> resolve(std::string host, std::uint16_t port,
                                                  address_family family = address_family::any);

}  // namespace weft::io
