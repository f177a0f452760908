// Tests of the example HTTP server's pure request parser and response helpers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http_parser.hpp"

using namespace weft::http;
using namespace std::string_literals;

namespace {

parse_result parse(std::string_view input, request& out, const limits& lim = {}) {
  return parse_request(input, lim, out);
}

parse_result parse(std::string_view input, const limits& lim = {}) {
  request out;
  return parse_request(input, lim, out);
}

/// Parses `input`, which must be exactly one whole request, and returns it (its views point
/// into `input`).
request parse_whole(std::string_view input) {
  request out;
  const parse_result p = parse(input, out);
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.consumed == input.size());
  CHECK(p.error_status == 0);
  return out;
}

/// The error status `input` gives, or -1 when it is not an error.
int error_of(std::string_view input, const limits& lim = {}) {
  const parse_result r = parse(input, lim);
  return r.status == parse_status::error ? r.error_status : -1;
}

/// `input` with non-printable bytes escaped, for failure messages.
std::string escaped(std::string_view input) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (char c : input) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\r') {
      s += "\\r";
    } else if (c == '\n') {
      s += "\\n";
    } else if (c == '\\') {
      s += "\\\\";
    } else if (u < 0x20 || u >= 0x7F) {
      s += "\\x";
      s += kHex[u >> 4];
      s += kHex[u & 15];
    } else {
      s += c;
    }
  }
  return s;
}

bool same_request(const request& a, const request& b) {
  if (a.method != b.method || a.target != b.target || a.version_minor != b.version_minor ||
      a.content_length != b.content_length || a.keep_alive != b.keep_alive ||
      a.headers.size() != b.headers.size())
    return false;
  for (std::size_t i = 0; i < a.headers.size(); ++i)
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value)
      return false;
  return true;
}

}  // namespace

TEST_CASE("a simple GET parses completely", "[http]") {
  const std::string in =
      "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test/1.0\r\n"
      "Accept:*/*\r\n\r\n";
  const request r = parse_whole(in);
  CHECK(r.method == "GET");
  CHECK(r.target == "/index.html?q=1");
  CHECK(r.version_minor == 1);
  CHECK(r.keep_alive);
  CHECK(r.content_length == 0);
  REQUIRE(r.headers.size() == 3);
  CHECK(r.headers[0].name == "Host");
  CHECK(r.headers[0].value == "example.com");
  CHECK(r.headers[1].name == "User-Agent");
  CHECK(r.headers[2].value == "*/*");
  CHECK(r.find("host") == "example.com");
  CHECK(r.find("USER-AGENT") == "test/1.0");
  CHECK(r.find("missing").empty());
}

TEST_CASE("HEAD over HTTP/1.0 needs no Host and does not keep alive", "[http]") {
  const std::string in = "HEAD / HTTP/1.0\r\n\r\n";
  const request r = parse_whole(in);
  CHECK(r.method == "HEAD");
  CHECK(r.target == "/");
  CHECK(r.version_minor == 0);
  CHECK(r.headers.empty());
  CHECK_FALSE(r.keep_alive);
}

TEST_CASE("field values are trimmed of OWS and may be empty", "[http]") {
  request r;
  const parse_result p =
      parse("GET / HTTP/1.1\r\nHost:\r\nX-A: \t a b \t \r\nX-B:\t\r\nX-C: caf\xc3\xa9\r\n\r\n", r);
  REQUIRE(p.status == parse_status::complete);
  REQUIRE(r.headers.size() == 4);
  CHECK(r.headers[0].value.empty());  // an empty Host is valid (RFC 9112 3.2)
  CHECK(r.headers[1].value == "a b");
  CHECK(r.headers[2].value.empty());
  CHECK(r.headers[3].value == "caf\xc3\xa9");  // obs-text passes
  CHECK(r.find("x-b").empty());
}

TEST_CASE("bare LF line ends are accepted", "[http]") {
  const std::string in = "GET /a HTTP/1.1\nHost: h\n\n";
  const request r = parse_whole(in);
  CHECK(r.find("Host") == "h");
  // Mixed line ends too.
  CHECK(parse("GET /a HTTP/1.1\r\nHost: h\n\r\n").status == parse_status::complete);
}

TEST_CASE("leading empty lines are skipped and counted in consumed, up to four", "[http]") {
  const std::string in = "\r\n\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
  const request r = parse_whole(in);
  CHECK(r.method == "GET");
  CHECK(error_of("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n") == 400);
  CHECK(parse("").status == parse_status::incomplete);
  CHECK(parse("\r").status == parse_status::incomplete);
  CHECK(parse("\r\n\r\n").status == parse_status::incomplete);
  CHECK(error_of("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n") == 400);  // bare CR
}

TEST_CASE("pipelined requests parse one after another", "[http]") {
  const std::string first = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string second = "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
  const std::string body = "hello";
  const std::string third = "HEAD /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  const std::string buffer = first + second + body + third + "GET /four HT";

  request r;
  std::string_view rest = buffer;
  parse_result p = parse(rest, r);
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.consumed == first.size());
  CHECK(r.target == "/one");
  rest.remove_prefix(p.consumed + r.content_length);

  p = parse(rest, r);
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.consumed == second.size());
  CHECK(r.method == "POST");
  CHECK(r.content_length == 5);
  CHECK(rest.substr(p.consumed, r.content_length) == body);
  rest.remove_prefix(p.consumed + r.content_length);

  p = parse(rest, r);
  REQUIRE(p.status == parse_status::complete);
  CHECK(p.consumed == third.size());
  CHECK(r.method == "HEAD");
  CHECK(r.target == "/three");
  CHECK_FALSE(r.keep_alive);
  CHECK(r.headers.size() == 2);  // the reused request holds this request's fields only
  rest.remove_prefix(p.consumed + r.content_length);

  p = parse(rest, r);
  CHECK(p.status == parse_status::incomplete);
  CHECK(p.consumed == 0);
}

TEST_CASE("byte-by-byte feeding is incomplete until the last byte", "[http]") {
  for (const std::string& in :
       {"GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\r\n"s,
        "\r\nHEAD / HTTP/1.0\nX: y\n\n"s}) {
    INFO(escaped(in));
    for (std::size_t i = 0; i < in.size(); ++i) {
      INFO("prefix " << i);
      const parse_result p = parse(std::string_view(in).substr(0, i));
      REQUIRE(p.status == parse_status::incomplete);
      REQUIRE(p.consumed == 0);
    }
    (void)parse_whole(in);
  }
}

TEST_CASE("malformed requests are 400", "[http]") {
  const std::string host = "Host: h\r\n";
  const std::vector<std::string> bad = {
      "G(T / HTTP/1.1\r\n" + host + "\r\n",                // non-token method
      " GET / HTTP/1.1\r\n" + host + "\r\n",               // leading space
      "GET  / HTTP/1.1\r\n" + host + "\r\n",               // two spaces
      "GET /  HTTP/1.1\r\n" + host + "\r\n",               // two spaces after the target
      "GET\t/ HTTP/1.1\r\n" + host + "\r\n",               // tab as separator
      "GET /\r\n" + host + "\r\n",                         // HTTP/0.9 form
      "GET / \r\n" + host + "\r\n",                        // empty version
      "GET / HTTP/1.1 \r\n" + host + "\r\n",               // trailing space
      "GET / http/1.1\r\n" + host + "\r\n",                // lowercase
      "GET / HTTP/1.10\r\n" + host + "\r\n",               // too long
      "GET / HTTP/1\r\n" + host + "\r\n",                  // no minor
      "GET / HTTP/a.1\r\n" + host + "\r\n",                // not a digit
      "GET /a\x01 HTTP/1.1\r\n" + host + "\r\n",           // control in the target
      "GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "\r\n",     // raw non-ASCII in the target
      "GET / HTTP/1.1\rHost: h\r\n\r\n",                   // bare CR ends no line
      "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",           // bare CR in a value
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",                // space before the colon
      "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",               // tab before the colon
      "GET / HTTP/1.1\r\nHost: h\r\n continued\r\n\r\n",   // obs-fold
      "GET / HTTP/1.1\r\nHost: h\r\n\tcontinued\r\n\r\n",  // obs-fold with HTAB
      "GET / HTTP/1.1\r\n Host: h\r\n\r\n",                // whitespace before the first field
      "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",      // no colon
      "GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n",      // empty name
      "GET / HTTP/1.1\r\nHost: h\r\nX(y): z\r\n\r\n",      // non-token name
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n",    // control in a value
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n",    // DEL in a value
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\0z\r\n\r\n"s,     // NUL in a value
      "GET / HTTP/1.1\r\n\r\n",                            // HTTP/1.1 without Host
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",      // two Hosts
      "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n",      // two Hosts in 1.0 too
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
  };
  for (const std::string& in : bad) {
    INFO(escaped(in));
    CHECK(error_of(in) == 400);
  }
}

TEST_CASE("acceptable variations of the fields parse", "[http]") {
  request r;
  REQUIRE(parse("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\ncontent-length: 7\r\n\r\n", r)
              .status == parse_status::complete);
  CHECK(r.content_length == 7);
  REQUIRE(parse("GET / HTTP/1.1\r\nHOST: h\r\nContent-Length:  0 \r\n\r\n", r).status ==
          parse_status::complete);
  CHECK(r.content_length == 0);
  // Any token is a syntactically valid method; classify_method decides what to do with it.
  REQUIRE(parse("M-SEARCH * HTTP/1.1\r\nHost: h\r\n\r\n", r).status == parse_status::complete);
  CHECK(r.method == "M-SEARCH");
  CHECK(r.target == "*");
}

TEST_CASE("Content-Length above max_body is 413", "[http]") {
  const std::string pre = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ";
  CHECK(parse(pre + "1048576\r\n\r\n").status == parse_status::complete);
  CHECK(error_of(pre + "1048577\r\n\r\n") == 413);
  CHECK(error_of(pre + "99999999999999999999999999999999\r\n\r\n") == 413);  // overflow
  CHECK(error_of(pre + "18446744073709551616\r\n\r\n") == 413);              // 2^64
  limits small;
  small.max_body = 10;
  CHECK(parse(pre + "10\r\n\r\n", small).status == parse_status::complete);
  CHECK(error_of(pre + "11\r\n\r\n", small) == 413);
}

TEST_CASE("a request line over max_request_line is 414, also before its end arrives", "[http]") {
  const limits lim;  // 8192
  // "GET " + target + " HTTP/1.1" is 13 bytes plus the target.
  const std::string exact = "GET /" + std::string(lim.max_request_line - 14, 'a') + " HTTP/1.1";
  REQUIRE(exact.size() == lim.max_request_line);
  CHECK(parse(exact + "\r\nHost: h\r\n\r\n").status == parse_status::complete);
  CHECK(error_of("GET /a" + exact.substr(5) + "\r\nHost: h\r\n\r\n") == 414);

  // Partial lines: exactly at the limit it may still end; one byte more cannot.
  const std::string partial = "GET /" + std::string(lim.max_request_line - 5, 'a');
  REQUIRE(partial.size() == lim.max_request_line);
  CHECK(parse(partial).status == parse_status::incomplete);
  CHECK(parse(partial + "\r").status == parse_status::incomplete);  // the CR may be the line end
  CHECK(error_of(partial + "a") == 414);
  CHECK(error_of(partial + "aa") == 414);
  CHECK(error_of(partial + std::string(100000, 'a')) == 414);
  // Even garbage without any line end is cut off at the limit.
  CHECK(error_of(std::string(lim.max_request_line + 1, '\x16')) == 414);
}

TEST_CASE("a header block over max_header_bytes is 431, also before its end arrives", "[http]") {
  limits lim;
  lim.max_header_bytes = 64;
  const std::string line = "GET / HTTP/1.1\r\n";
  const std::string host = "Host: h\r\n";                                  // 9 bytes
  const std::string fill = "X: " + std::string(64 - 9 - 5, 'a') + "\r\n";  // 64 - 9 bytes
  REQUIRE(host.size() + fill.size() == 64);
  CHECK(parse(line + host + fill + "\r\n", lim).status == parse_status::complete);
  CHECK(error_of(line + host + "Y" + fill + "\r\n", lim) == 431);
  // Partial: the block is over the limit before its last line ends.
  CHECK(parse(line + host + fill, lim).status == parse_status::incomplete);
  CHECK(parse(line + host + fill + "\r", lim).status == parse_status::incomplete);
  CHECK(error_of(line + host + fill + "Z", lim) == 431);
  CHECK(error_of(line + host + "X: " + std::string(60, 'a'), lim) == 431);

  // The default limit, with a value trickling in and no line end yet.
  const std::string big = line + "Host: h\r\nCookie: " + std::string(16384, 'c');
  CHECK(error_of(big) == 431);
  CHECK(parse(big.substr(0, line.size() + 16384)).status == parse_status::incomplete);
}

TEST_CASE("more than max_headers fields is 431", "[http]") {
  auto with_fields = [](std::size_t n, bool finished) {
    std::string s = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (std::size_t i = 1; i < n; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
    if (finished) s += "\r\n";
    return s;
  };
  CHECK(parse(with_fields(100, true)).status == parse_status::complete);
  CHECK(error_of(with_fields(101, true)) == 431);
  CHECK(parse(with_fields(100, false)).status == parse_status::incomplete);
  CHECK(error_of(with_fields(101, false)) == 431);  // before the head ends
  limits lim;
  lim.max_headers = 1;
  CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n", lim).status == parse_status::complete);
  CHECK(error_of("GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n", lim) == 431);
}

TEST_CASE("Transfer-Encoding is 501", "[http]") {
  CHECK(error_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") == 501);
  CHECK(error_of("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: gzip, chunked\r\n\r\n") == 501);
  CHECK(error_of("GET / HTTP/1.0\r\nTransfer-Encoding:\r\n\r\n") == 501);
}

TEST_CASE("unsupported HTTP versions are 505", "[http]") {
  for (const char* v : {"HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.1", "HTTP/9.9"}) {
    INFO(v);
    CHECK(error_of("GET / "s + v + "\r\nHost: h\r\n\r\n") == 505);
    // Decided as soon as the request line ends.
    CHECK(error_of("GET / "s + v + "\r\n") == 505);
  }
}

TEST_CASE("the request line is judged as soon as it ends", "[http]") {
  CHECK(error_of("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n"s) == 400);  // a TLS hello
  CHECK(error_of("GET / HTTP/1.1\r\nHost: h\r\n") == -1);                     // fine so far
}

TEST_CASE("keep-alive follows the version and the Connection tokens", "[http]") {
  struct row {
    const char* version;
    const char* fields;
    bool keep_alive;
  };
  const row rows[] = {
      {"HTTP/1.1", "", true},
      {"HTTP/1.1", "Connection: close\r\n", false},
      {"HTTP/1.1", "Connection: CLOSE\r\n", false},
      {"HTTP/1.1", "Connection: keep-alive\r\n", true},
      {"HTTP/1.1", "Connection: Upgrade, close\r\n", false},
      {"HTTP/1.1", "Connection: Upgrade,\tClose ,foo\r\n", false},
      {"HTTP/1.1", "Connection: closed\r\n", true},
      {"HTTP/1.1", "Connection: close-ish, x-close\r\n", true},
      {"HTTP/1.1", "Connection: foo\r\nconnection: close\r\n", false},
      {"HTTP/1.1", "X-Connection: close\r\n", true},
      {"HTTP/1.0", "", false},
      {"HTTP/1.0", "Connection: keep-alive\r\n", true},
      {"HTTP/1.0", "Connection: Keep-Alive\r\n", true},
      {"HTTP/1.0", "Connection: foo, keep-alive\r\n", true},
      {"HTTP/1.0", "Connection: foo\r\nConnection: KEEP-ALIVE\r\n", true},
      {"HTTP/1.0", "Connection: keep-alive, close\r\n", false},
      {"HTTP/1.0", "Connection: keepalive\r\n", false},
      {"HTTP/1.0", "Connection: ,,\r\n", false},
  };
  for (const row& x : rows) {
    const std::string in = "GET / "s + x.version + "\r\nHost: h\r\n" + x.fields + "\r\n";
    INFO(escaped(in));
    request r;
    r.keep_alive = !x.keep_alive;  // a stale value must not survive
    REQUIRE(parse(in, r).status == parse_status::complete);
    CHECK(r.keep_alive == x.keep_alive);
  }
}

TEST_CASE("classify_method", "[http]") {
  CHECK(classify_method("GET") == method_kind::get);
  CHECK(classify_method("HEAD") == method_kind::head);
  for (const char* m : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}) {
    INFO(m);
    CHECK(classify_method(m) == method_kind::not_allowed);
  }
  for (const char* m : {"get", "Get", "PROPFIND", "BREW", "GETX", "", "GE"}) {
    INFO(m);
    CHECK(classify_method(m) == method_kind::not_implemented);
  }
}

TEST_CASE("resolve_target maps targets to safe relative paths", "[http]") {
  struct row {
    std::string target;
    int status;
    std::string path;
  };
  const row rows[] = {
      {"/", 0, ""},
      {"/a/b.txt", 0, "a/b.txt"},
      {"/a/./b", 0, "a/b"},
      {"//a", 0, "a"},
      {"/a//b/", 0, "a/b"},
      {"/./.", 0, ""},
      {"/x?y=1", 0, "x"},
      {"/x?y=/../../etc", 0, "x"},
      {"/x#frag", 0, "x"},
      {"/%7euser/a%20b.html", 0, "~user/a b.html"},
      {"/a+b", 0, "a+b"},
      {"/caf%C3%A9", 0, "caf\xc3\xa9"},
      {"/a%2fb", 0, "a/b"},              // a decoded '/' separates, like a literal one
      {"/%252e%252e/x", 0, "%2e%2e/x"},  // decoded once only
      {"/...", 0, "..."},
      {"/..a/b..", 0, "..a/b.."},
      {"/.hidden", 0, ".hidden"},
      {"/a/../b", 403, ""},
      {"/..", 403, ""},
      {"/../", 403, ""},
      {"/a/..", 403, ""},
      {"/%2e%2e/etc/passwd", 403, ""},
      {"/%2E%2e/x", 403, ""},
      {"/.%2e/x", 403, ""},
      {"/..%2fetc", 403, ""},
      {"/a%2f..%2fb", 403, ""},
      {"/a%2F%2E%2E", 403, ""},
      {"/a%00b", 400, ""},
      {"/a%0ab", 400, ""},
      {"/a%7Fb", 400, ""},
      {"/bad%zz", 400, ""},
      {"/bad%2", 400, ""},
      {"/bad%", 400, ""},
      {"/bad%g0", 400, ""},
      {"/a\\b", 400, ""},
      {"/..%5c..%5cwindows", 400, ""},
      {"/a%5Cb", 400, ""},
      {"relative", 400, ""},
      {"", 400, ""},
      {"*", 400, ""},
      {"http://example.com/a", 0, "a"},
      {"HTTP://example.com/a/%2e%2e/b", 403, ""},
      {"https://example.com", 0, ""},
      {"http:///a", 400, ""},
      {"ftp://example.com/a", 400, ""},
      {"?x", 400, ""},
  };
  for (const row& x : rows) {
    INFO(escaped(x.target));
    const target_result r = resolve_target(x.target);
    CHECK(r.error_status == x.status);
    CHECK(r.path == x.path);
  }
}

TEST_CASE("content_type_for", "[http]") {
  CHECK(content_type_for("index.html") == "text/html; charset=utf-8");
  CHECK(content_type_for("a/b/page.HTM") == "text/html; charset=utf-8");
  CHECK(content_type_for("notes.txt") == "text/plain; charset=utf-8");
  CHECK(content_type_for("s.css") == "text/css; charset=utf-8");
  CHECK(content_type_for("app.min.js") == "text/javascript; charset=utf-8");
  CHECK(content_type_for("d.json") == "application/json");
  CHECK(content_type_for("i.png") == "image/png");
  CHECK(content_type_for("i.jpg") == "image/jpeg");
  CHECK(content_type_for("i.JPEG") == "image/jpeg");
  CHECK(content_type_for("i.gif") == "image/gif");
  CHECK(content_type_for("i.svg") == "image/svg+xml");
  CHECK(content_type_for("favicon.ico") == "image/x-icon");
  CHECK(content_type_for("m.wasm") == "application/wasm");
  CHECK(content_type_for("doc.pdf") == "application/pdf");
  for (const char* p :
       {"", "README", "a.tar.gz", "x.", "x.htmlx", "dir.html/file", ".html", "a/.css", "x.h tml"}) {
    INFO(p);
    CHECK(content_type_for(p) == "application/octet-stream");
  }
}

TEST_CASE("reason_phrase", "[http]") {
  CHECK(reason_phrase(200) == "OK");
  CHECK(reason_phrase(400) == "Bad Request");
  CHECK(reason_phrase(403) == "Forbidden");
  CHECK(reason_phrase(404) == "Not Found");
  CHECK(reason_phrase(405) == "Method Not Allowed");
  CHECK(reason_phrase(413) == "Content Too Large");
  CHECK(reason_phrase(414) == "URI Too Long");
  CHECK(reason_phrase(431) == "Request Header Fields Too Large");
  CHECK(reason_phrase(500) == "Internal Server Error");
  CHECK(reason_phrase(501) == "Not Implemented");
  CHECK(reason_phrase(505) == "HTTP Version Not Supported");
  CHECK(reason_phrase(299).empty());
  CHECK(reason_phrase(-1).empty());
}

TEST_CASE("response_head", "[http]") {
  CHECK(response_head(200, "text/html; charset=utf-8", 1234, true) ==
        "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Length: 1234\r\n"
        "Content-Type: text/html; charset=utf-8\r\nConnection: keep-alive\r\n\r\n");
  CHECK(response_head(404, "", 0, false) ==
        "HTTP/1.1 404 Not Found\r\nServer: weft\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n");
  CHECK(response_head(405, "text/plain; charset=utf-8", 18, false, "Allow: GET, HEAD\r\n") ==
        "HTTP/1.1 405 Method Not Allowed\r\nServer: weft\r\nContent-Length: 18\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n");
  CHECK(response_head(200, "", 18446744073709551615u, true, "A: 1\r\nB: 2") ==
        "HTTP/1.1 200 OK\r\nServer: weft\r\nContent-Length: 18446744073709551615\r\n"
        "Connection: keep-alive\r\nA: 1\r\nB: 2\r\n\r\n");
  // A head the parser would itself accept as a message head.
  const std::string head = response_head(431, "", 0, false);
  CHECK(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  CHECK(head.ends_with("\r\n\r\n"));
}

TEST_CASE("randomized robustness: mutated requests, whole and in chunks", "[http][fuzz]") {
  const std::vector<std::string> seeds = {
      "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /a/b.txt?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n"
      "Accept: */*\r\n\r\n",
      "HEAD /%2e%2e/x HTTP/1.0\nConnection: Keep-Alive\n\n",
      "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: "
      "h\r\n\r\n",
      "\r\nGET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc",
      "OPTIONS * HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(40, 'v') + "\r\n\r\n",
  };
  const std::string interesting = "\r\n :\t%/.\x7f\x01\x00\xff,09aZ"s;

  std::mt19937 rng(20240611);
  auto below = [&](std::size_t n) {
    return n == 0 ? std::size_t{0} : std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  auto random_byte = [&]() -> char {
    if (below(2) == 0) return interesting[below(interesting.size())];
    return static_cast<char>(below(256));
  };

  limits small;
  small.max_request_line = 24;
  small.max_header_bytes = 48;
  small.max_headers = 3;
  small.max_body = 4;

  std::size_t counts[3] = {};
  request reused;  // reused across iterations: stale contents must not leak into results
  for (int iter = 0; iter < 20000; ++iter) {
    std::string m = seeds[below(seeds.size())];
    const std::size_t mutations = below(4);  // 0 keeps some inputs valid
    for (std::size_t k = 0; k < mutations; ++k) {
      switch (below(5)) {
        case 0:  // byte flip
          if (!m.empty()) m[below(m.size())] = random_byte();
          break;
        case 1:  // insertion
          m.insert(m.begin() + static_cast<std::ptrdiff_t>(below(m.size() + 1)), random_byte());
          break;
        case 2:  // deletion
          if (!m.empty()) m.erase(below(m.size()), 1);
          break;
        case 3:  // truncation
          m.resize(below(m.size() + 1));
          break;
        case 4: {  // duplicate a slice
          const std::size_t at = below(m.size() + 1);
          const std::size_t len = std::min<std::size_t>(below(16), m.size() - at);
          m.insert(below(m.size() + 1), m.substr(at, len));
          break;
        }
      }
    }
    const limits& lim = (iter % 2 == 0) ? limits{} : small;
    INFO("iteration " << iter << ": " << escaped(m));

    request whole_req;
    const parse_result whole = parse_request(m, lim, whole_req);
    REQUIRE(whole.consumed <= m.size());
    switch (whole.status) {
      case parse_status::incomplete:
        REQUIRE(whole.consumed == 0);
        REQUIRE(whole.error_status == 0);
        break;
      case parse_status::complete:
        REQUIRE(whole.consumed > 0);
        REQUIRE(whole.error_status == 0);
        REQUIRE(whole_req.content_length <= lim.max_body);
        REQUIRE((whole_req.version_minor == 0 || whole_req.version_minor == 1));
        // The head alone is complete too, with the same length.
        REQUIRE(
            parse_request(std::string_view(m).substr(0, whole.consumed), lim, reused).consumed ==
            whole.consumed);
        break;
      case parse_status::error:
        REQUIRE(whole.consumed == 0);
        REQUIRE((whole.error_status == 400 || whole.error_status == 413 ||
                 whole.error_status == 414 || whole.error_status == 431 ||
                 whole.error_status == 501 || whole.error_status == 505));
        break;
    }
    ++counts[static_cast<int>(whole.status)];

    // Fed in random chunks, the first non-incomplete answer is the answer for the whole buffer.
    std::size_t have = 0;
    parse_result chunked;
    while (true) {
      have = std::min(m.size(), have + 1 + below(below(2) == 0 ? 4 : 64));
      chunked = parse_request(std::string_view(m).substr(0, have), lim, reused);
      REQUIRE(chunked.consumed <= have);
      if (chunked.status != parse_status::incomplete || have == m.size()) break;
    }
    REQUIRE(chunked.status == whole.status);
    REQUIRE(chunked.consumed == whole.consumed);
    REQUIRE(chunked.error_status == whole.error_status);
    if (whole.status == parse_status::complete) REQUIRE(same_request(reused, whole_req));
  }
  // The mutations reach every outcome often enough for the test to mean something.
  CHECK(counts[0] > 1000);
  CHECK(counts[1] > 1000);
  CHECK(counts[2] > 1000);
}

TEST_CASE("randomized resolve_target never lets a dangerous path through", "[http][fuzz]") {
  const std::string alphabet = "/./.%2e%2E%2f%2F%5c%00%zz%%a?#\\"s;
  std::mt19937 rng(7);
  std::size_t accepted = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string t = "/";
    const std::size_t n = std::uniform_int_distribution<std::size_t>(0, 24)(rng);
    for (std::size_t i = 0; i < n; ++i)
      t += alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
    INFO(escaped(t));
    const target_result r = resolve_target(t);
    if (r.error_status != 0) {
      REQUIRE((r.error_status == 400 || r.error_status == 403));
      REQUIRE(r.path.empty());
      continue;
    }
    ++accepted;
    REQUIRE_FALSE(r.path.starts_with("/"));
    REQUIRE_FALSE(r.path.ends_with("/"));
    REQUIRE(r.path.find("//") == std::string::npos);
    REQUIRE(r.path.find('\\') == std::string::npos);
    REQUIRE(r.path.find('\0') == std::string::npos);
    std::string_view rest = r.path;
    while (!rest.empty()) {
      const std::size_t slash = rest.find('/');
      const std::string_view seg = rest.substr(0, slash);
      REQUIRE(seg != "..");
      REQUIRE(seg != ".");
      rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash + 1);
    }
  }
  CHECK(accepted > 1000);
}
