// The process pool's frame codec (pool/frame.hpp, private): what the worker and the pool send
// each other. Frames encoded by frame_writer decode with frame_reader from a buffer, from a
// stream in pieces and from a socket with fds; malformed frames (short, oversize, bad tag or
// magic, wrong fd count, out of step) are refused, never taken for a job or a reply.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "frame.hpp"  // pool/, private to the library

namespace {

using weft::io::fd;
using weft::pool::detail::frame_header;
using weft::pool::detail::frame_kind;
using weft::pool::detail::frame_reader;
using weft::pool::detail::frame_writer;
using status = frame_reader::status;

// The bytes a writer's first message carries (what one sendmsg would send whole).
std::string bytes_of(frame_writer& w) {
  std::string out;
  const msghdr* m = w.first();
  for (std::size_t i = 0; i < m->msg_iovlen; ++i) {
    out.append(static_cast<const char*>(m->msg_iov[i].iov_base), m->msg_iov[i].iov_len);
  }
  return out;
}

std::string encode(frame_kind kind, const std::string& payload) {
  const std::vector<fd> none;
  frame_writer w(kind, payload, none);
  return bytes_of(w);
}

std::string header_bytes(const frame_header& h) {
  return std::string(reinterpret_cast<const char*>(&h), sizeof h);
}

// Delivers `bytes` as one first receive would (header, then the inline room; no fds).
status deliver_first(frame_reader& r, const std::string& bytes) {
  msghdr* m = r.first();
  m->msg_controllen = 0;
  std::size_t done = 0;
  for (std::size_t i = 0; i < m->msg_iovlen && done < bytes.size(); ++i) {
    const std::size_t n = std::min(bytes.size() - done, m->msg_iov[i].iov_len);
    std::memcpy(m->msg_iov[i].iov_base, bytes.data() + done, n);
    done += n;
  }
  return r.received(done);
}

}  // namespace

TEST_CASE("pool frame: a frame decodes from a buffer, whole or in pieces") {
  const std::string payload = "count_words args" + std::string(5000, 'x');
  const std::string bytes = encode(frame_kind::batch, payload);
  REQUIRE(bytes.size() == sizeof(frame_header) + payload.size());

  SECTION("whole") {
    frame_reader r;
    std::size_t used = 0;
    CHECK(r.feed(bytes, used) == status::done);
    CHECK(used == bytes.size());
    CHECK(r.header.kind == frame_kind::batch);
    CHECK(r.payload == payload);
  }
  SECTION("a byte at a time, as a slow stream delivers it") {
    frame_reader r;
    status s = status::more;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      REQUIRE(s == status::more);
      std::size_t used = 0;
      s = r.feed(std::string_view(bytes).substr(i, 1), used);
      REQUIRE(used == 1);
    }
    CHECK(s == status::done);
    CHECK(r.payload == payload);
  }
  SECTION("the first receive brings the header and the start of the payload") {
    frame_reader r;
    REQUIRE(deliver_first(r, bytes) == status::more);  // 4096 bytes inline, the rest to come
    std::size_t used = 0;
    CHECK(r.feed(std::string_view(bytes).substr(sizeof(frame_header) + 4096), used) ==
          status::done);
    CHECK(r.payload == payload);
  }
  SECTION("an empty payload") {
    frame_reader r;
    std::size_t used = 0;
    CHECK(r.feed(encode(frame_kind::ok, ""), used) == status::done);
    CHECK(r.payload.empty());
  }
}

TEST_CASE("pool frame: two frames back to back, each takes its own bytes") {
  const std::string a = encode(frame_kind::ok, "first");
  const std::string b = encode(frame_kind::error, "second, longer");
  const std::string both = a + b;
  frame_reader first;
  std::size_t used = 0;
  REQUIRE(first.feed(both, used) == status::done);
  CHECK(used == a.size());
  CHECK(first.payload == "first");
  frame_reader second;
  REQUIRE(second.feed(std::string_view(both).substr(used), used) == status::done);
  CHECK(second.header.kind == frame_kind::error);
  CHECK(second.payload == "second, longer");
}

TEST_CASE("pool frame: malformed frames are refused") {
  const std::string good = encode(frame_kind::job, "payload");
  frame_header h;
  std::memcpy(&h, good.data(), sizeof h);

  SECTION("short: every strict prefix waits for more, none is done") {
    for (std::size_t n = 0; n < good.size(); ++n) {
      frame_reader r;
      std::size_t used = 0;
      REQUIRE(r.feed(std::string_view(good).substr(0, n), used) == status::more);
    }
  }
  SECTION("oversize length: refused before anything is allocated") {
    h.size = weft::pool::detail::max_frame_payload;
    frame_reader r;
    std::size_t used = 0;
    CHECK(r.feed(header_bytes(h), used) == status::malformed);
    h.size = ~std::uint64_t{0};
    frame_reader r2;
    CHECK(r2.feed(header_bytes(h), used) == status::malformed);
  }
  SECTION("bad tag") {
    for (std::uint32_t kind : {0u, 5u, 0xffffffffu}) {
      h.kind = static_cast<frame_kind>(kind);
      frame_reader r;
      std::size_t used = 0;
      CHECK(r.feed(header_bytes(h) + "payload", used) == status::malformed);
    }
  }
  SECTION("bad magic") {
    h.magic ^= 1;
    frame_reader r;
    std::size_t used = 0;
    CHECK(r.feed(header_bytes(h) + "payload", used) == status::malformed);
  }
  SECTION("fds announced that did not come") {
    h.fd_count = 1;
    frame_reader r;
    std::size_t used = 0;
    CHECK(r.feed(header_bytes(h) + "payload", used) == status::malformed);
  }
  SECTION("out of step: the first receive brought more than the frame") {
    frame_reader r;
    CHECK(deliver_first(r, good + "the next frame's bytes") == status::malformed);
  }
}

TEST_CASE("pool frame: a writer resumes a short send where it stopped") {
  const std::string payload(100, 'p');
  const std::vector<fd> none;
  frame_writer w(frame_kind::job, payload, none);
  const std::string all = bytes_of(w);
  auto rest = w.sent(3);  // three bytes of the header went
  REQUIRE(rest.size() == sizeof(frame_header) - 3);
  CHECK(std::string(rest.data(), rest.size()) == all.substr(3, rest.size()));
  rest = w.sent(rest.size() + 10);  // the header and ten bytes of the payload
  REQUIRE(rest.size() == payload.size() - 10);
  CHECK(rest.data() == payload.data() + 10);
  CHECK(w.sent(rest.size()).empty());
}

TEST_CASE("pool frame: over a socket, with fds and a payload longer than one receive") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  fd a(sv[0]), b(sv[1]);
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  std::vector<fd> fds;
  fds.emplace_back(p[0]);
  fds.emplace_back(p[1]);
  std::string payload(300000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);

  std::thread sender([&] {
    frame_writer w(frame_kind::ok, payload, fds);
    ssize_t n = ::sendmsg(a.get(), w.first(), MSG_NOSIGNAL);
    for (auto rest = w.sent(static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
         n > 0 && !rest.empty(); rest = w.sent(static_cast<std::size_t>(n))) {
      n = ::send(a.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
    }
  });
  frame_reader r;
  ssize_t n = ::recvmsg(b.get(), r.first(), MSG_CMSG_CLOEXEC);
  REQUIRE(n > 0);
  status s = r.received(static_cast<std::size_t>(n));
  int receives = 1;
  while (s == status::more && receives < 10000) {
    const auto want = r.want();
    n = ::recv(b.get(), want.data(), want.size(), 0);
    REQUIRE(n > 0);
    s = r.received(static_cast<std::size_t>(n));
    ++receives;
  }
  sender.join();
  CHECK(s == status::done);
  CHECK(r.payload == payload);
  REQUIRE(r.fds.size() == 2);
  CHECK(r.fds[0].get() != fds[0].get());  // new descriptors, of the same pipe
  CHECK(::write(r.fds[1].get(), "z", 1) == 1);
  char c = 0;
  CHECK(::read(fds[0].get(), &c, 1) == 1);
  CHECK(c == 'z');
}
