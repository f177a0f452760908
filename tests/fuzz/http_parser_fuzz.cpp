// libFuzzer harness for the example HTTP server's request parser (examples/http/http_parser.hpp).
//
// Input: byte 0 holds options: bits 0-1 pick the limits (0, 3: the defaults; 1: small; 2: tiny,
// so that every limit is reached by short inputs), bits 2-4 a number k of extra split points;
// the next k bytes place them (fractions of the stream, /255); the rest is the byte stream a
// client sends on one connection, which may hold several pipelined requests with bodies.
//
// The stream is served twice, the way http_server.cpp does it (parse the pending bytes, skip
// `content_length` body bytes, parse the next request from what follows, stop at an error):
// once arriving whole, once arriving in chunks cut at the split points, re-parsing the growing
// buffer with one reused `request`. Both must give the same sequence of results (status,
// consumed, error status, where each request starts, the parsed request) and end in the same
// state: the parser is documented as prefix-consistent. Beyond that, each result is checked
// against the documentation: consumed within the input and 0 unless complete, error statuses
// from the documented set, and for a complete head: the head ends with an empty line, re-parses
// alone to the same request, its request line is `method SP target SP HTTP/1.x` after at most
// 4 empty lines, method a token, target visible ASCII, fields (token names, trimmed values
// without control characters) appear in the head, Content-Length, Host, Transfer-Encoding and
// keep-alive agree with the fields, the limits hold, `find` finds the first field. The target is
// then resolved (no "..", "." or empty segment, no backslash or control byte gets through) and
// a response head built, as the server would.
//
// `http_parser_fuzz --write-seeds=DIR` writes the seed corpus (tests/fuzz/corpus/http_parser was
// made that way) and exits.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "http_parser.hpp"
#include "seeds_flag.hpp"

using namespace weft::http;

namespace {

limits pick_limits(unsigned choice) {
  limits lim;
  if (choice == 1) {  // the small limits of tests/http_parser_test.cpp's randomized test
    lim.max_request_line = 24;
    lim.max_header_bytes = 48;
    lim.max_headers = 3;
    lim.max_body = 4;
  } else if (choice == 2) {
    lim.max_request_line = 8;
    lim.max_header_bytes = 16;
    lim.max_headers = 1;
    lim.max_body = 0;
  }
  return lim;
}

bool is_tchar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool same_request(const request& a, const request& b) {
  if (a.method != b.method || a.target != b.target || a.version_minor != b.version_minor ||
      a.content_length != b.content_length || a.keep_alive != b.keep_alive ||
      a.headers.size() != b.headers.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.headers.size(); ++i) {
    if (a.headers[i].name != b.headers[i].name || a.headers[i].value != b.headers[i].value) {
      return false;
    }
  }
  return true;
}

// What the documentation says of a complete head `head` (exactly `consumed` bytes) parsed into
// `req` under `lim`.
void check_complete(std::string_view head, const request& req, const limits& lim) {
  FUZZ_CHECK(!head.empty() && head.back() == '\n');
  FUZZ_CHECK(head.ends_with("\n\n") || head.ends_with("\n\r\n"));
  FUZZ_CHECK(req.version_minor == 0 || req.version_minor == 1);
  FUZZ_CHECK(req.content_length <= lim.max_body);
  FUZZ_CHECK(req.headers.size() <= lim.max_headers);

  // Up to 4 empty lines, then the request line.
  std::string_view rest = head;
  for (int i = 0; i < 4; ++i) {
    if (rest.starts_with("\r\n")) {
      rest.remove_prefix(2);
    } else if (rest.starts_with("\n")) {
      rest.remove_prefix(1);
    }
  }
  FUZZ_CHECK(is_token(req.method));
  FUZZ_CHECK(!req.target.empty());
  for (char c : req.target) FUZZ_CHECK(c >= 0x21 && c <= 0x7e);
  const std::string line =
      req.method + " " + req.target + " HTTP/1." + static_cast<char>('0' + req.version_minor);
  FUZZ_CHECK(rest.starts_with(line));
  rest.remove_prefix(line.size());
  FUZZ_CHECK(rest.starts_with("\r\n") || rest.starts_with("\n"));
  FUZZ_CHECK(line.size() <= lim.max_request_line);

  // The fields: as received, in the head; and what the head's semantics say of them.
  std::size_t hosts = 0, lengths = 0;
  bool close = false, keep_alive = false;
  for (const header& h : req.headers) {
    FUZZ_CHECK(is_token(h.name));
    FUZZ_CHECK(rest.find(h.name + ":") != std::string_view::npos);
    FUZZ_CHECK(trim(h.value).size() == h.value.size());
    for (char c : h.value)
      FUZZ_CHECK(c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f));
    FUZZ_CHECK(rest.find(h.value) != std::string_view::npos);
    FUZZ_CHECK(!iequal(h.name, "Transfer-Encoding"));
    if (iequal(h.name, "Host")) ++hosts;
    if (iequal(h.name, "Content-Length")) {
      ++lengths;
      FUZZ_CHECK(!h.value.empty());
      std::size_t n = 0;
      for (char c : h.value) {
        FUZZ_CHECK(c >= '0' && c <= '9');
        if (n <= lim.max_body) n = n * 10 + static_cast<std::size_t>(c - '0');  // no overflow
      }
      FUZZ_CHECK(n == req.content_length);
    }
    if (iequal(h.name, "Connection")) {
      std::string_view tokens = h.value;
      while (true) {
        const std::size_t comma = tokens.find(',');
        const std::string_view token = trim(tokens.substr(0, comma));
        close = close || iequal(token, "close");
        keep_alive = keep_alive || iequal(token, "keep-alive");
        if (comma == std::string_view::npos) break;
        tokens.remove_prefix(comma + 1);
      }
    }
  }
  if (lengths == 0) FUZZ_CHECK(req.content_length == 0);
  if (req.version_minor == 1) FUZZ_CHECK(hosts == 1);
  FUZZ_CHECK(hosts <= 1);
  FUZZ_CHECK(req.keep_alive == (!close && (req.version_minor == 1 || keep_alive)));
  // find() gives the first field of that name, whatever its case.
  for (const header& h : req.headers) {
    const auto first = std::find_if(req.headers.begin(), req.headers.end(),
                                    [&](const header& g) { return iequal(g.name, h.name); });
    FUZZ_CHECK(req.find(h.name) == first->value);
  }

  // The head alone is complete too, with the same length and request.
  request alone;
  const parse_result again = parse_request(head, lim, alone);
  FUZZ_CHECK(again.status == parse_status::complete);
  FUZZ_CHECK(again.consumed == head.size());
  FUZZ_CHECK(same_request(alone, req));

  // What the server does next with it.
  (void)classify_method(req.method);
  const target_result t = resolve_target(req.target);
  FUZZ_CHECK(t.error_status == 0 || t.error_status == 400 || t.error_status == 403);
  if (t.error_status == 0) {
    const std::string& p = t.path;
    FUZZ_CHECK(!p.starts_with('/') && !p.ends_with('/'));
    FUZZ_CHECK(p.find("//") == std::string::npos);
    FUZZ_CHECK(p.find('\\') == std::string::npos);
    for (char c : p) FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
    std::string_view segments = p;
    while (!segments.empty()) {
      const std::size_t slash = segments.find('/');
      const std::string_view seg = segments.substr(0, slash);
      FUZZ_CHECK(!seg.empty() && seg != "." && seg != "..");
      if (slash == std::string_view::npos) break;
      segments.remove_prefix(slash + 1);
    }
    std::string out;
    append_response_head(out, 200, content_type_for(p), req.content_length, req.keep_alive);
    FUZZ_CHECK(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("\r\n\r\n"));
  } else {
    FUZZ_CHECK(t.path.empty());
  }
}

// One parse_request outcome as the server saw it.
struct event {
  parse_status status;
  std::size_t at;  // where in the stream the request began
  std::size_t consumed;
  int error_status;
  request req;  // when complete
};

struct served {
  std::vector<event> events;
  std::size_t start = 0;      // the first byte not consumed at the end
  std::size_t body_left = 0;  // body bytes still expected at the end
};

constexpr std::size_t max_requests = 64;

// Serves `stream`, arriving in pieces that end at `arrivals` (increasing, the last = size), the
// way http_server.cpp does; `check` validates each complete head (once is enough: the chunked
// run must give the same results as the whole one).
served serve(std::string_view stream, const std::vector<std::size_t>& arrivals, const limits& lim,
             bool check) {
  served s;
  request req;  // reused across requests, like the server's
  for (const std::size_t arrived : arrivals) {
    const std::size_t skip = std::min(s.body_left, arrived - s.start);
    s.start += skip;
    s.body_left -= skip;
    while (s.body_left == 0 && s.start < arrived) {
      const std::string_view pending = stream.substr(s.start, arrived - s.start);
      const parse_result r = parse_request(pending, lim, req);
      FUZZ_CHECK(r.consumed <= pending.size());
      if (r.status == parse_status::incomplete) {
        FUZZ_CHECK(r.consumed == 0 && r.error_status == 0);
        break;
      }
      if (r.status == parse_status::error) {
        FUZZ_CHECK(r.consumed == 0);
        FUZZ_CHECK(r.error_status == 400 || r.error_status == 413 || r.error_status == 414 ||
                   r.error_status == 431 || r.error_status == 501 || r.error_status == 505);
        FUZZ_CHECK(!reason_phrase(r.error_status).empty());
        s.events.push_back({r.status, s.start, 0, r.error_status, {}});
        return s;  // the server answers and closes
      }
      FUZZ_CHECK(r.status == parse_status::complete);
      FUZZ_CHECK(r.consumed > 0 && r.error_status == 0);
      if (check) check_complete(pending.substr(0, r.consumed), req, lim);
      s.events.push_back({r.status, s.start, r.consumed, 0, req});
      if (s.events.size() == max_requests) return s;
      s.start += r.consumed;
      s.body_left = req.content_length;
      const std::size_t body = std::min(s.body_left, arrived - s.start);
      s.start += body;
      s.body_left -= body;
    }
  }
  return s;
}

void fuzz(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return;
  const unsigned options = data[0];
  const limits lim = pick_limits(options & 3);
  const std::size_t splits = std::min<std::size_t>((options >> 2) & 7, size - 1);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1 + splits,
                                size - 1 - splits);

  std::vector<std::size_t> arrivals;
  for (std::size_t i = 0; i < splits; ++i) arrivals.push_back(data[1 + i] * stream.size() / 255);
  arrivals.push_back(stream.size());
  std::sort(arrivals.begin(), arrivals.end());
  arrivals.erase(std::unique(arrivals.begin(), arrivals.end()), arrivals.end());

  const served whole = serve(stream, {stream.size()}, lim, true);
  const served chunked = serve(stream, arrivals, lim, false);
  FUZZ_CHECK(whole.events.size() == chunked.events.size());
  for (std::size_t i = 0; i < whole.events.size(); ++i) {
    const event& a = whole.events[i];
    const event& b = chunked.events[i];
    FUZZ_CHECK(a.status == b.status && a.at == b.at && a.consumed == b.consumed &&
               a.error_status == b.error_status);
    FUZZ_CHECK(same_request(a.req, b.req));
  }
  FUZZ_CHECK(whole.start == chunked.start && whole.body_left == chunked.body_left);
}

// ---- the seed corpus

void write_seed(const std::string& dir, const char* name, unsigned options, std::string_view splits,
                std::string_view stream) {
  std::string bytes(1, static_cast<char>(options | (splits.size() << 2)));
  bytes += splits;
  bytes += stream;
  const std::string file = dir + "/" + name;
  std::FILE* f = std::fopen(file.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() ||
      std::fclose(f) != 0) {
    std::perror(file.c_str());
    std::exit(1);
  }
}

void write_seeds(const std::string& dir) {
  const std::string get = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  write_seed(dir, "get", 0, "", get);
  write_seed(dir, "get-split", 0, "\x10\x40\x80\xc0\xf0", get);
  write_seed(dir, "get-fields", 0, "\x55\xaa",
             "GET /a/b.txt?x=1#f HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n"
             "Accept: */*\r\nX-Empty:\r\nX-Trim: \t v \t\r\n\r\n");
  write_seed(dir, "head-1.0-lf", 0, "", "HEAD /%2e%2e/x HTTP/1.0\nConnection: Keep-Alive\n\n");
  write_seed(dir, "post-body-pipelined", 0, "\x30\x31\x90",
             "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\n"
             "Host: h\r\nConnection: close\r\n\r\n");
  write_seed(dir, "pipelined-3", 0, "\x20\x60\xa0\xe0", get + get + "HEAD /x HTTP/1.0\r\n\r\n");
  write_seed(dir, "leading-empty-lines", 0, "", "\r\n\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
  write_seed(dir, "too-many-empty-lines", 0, "", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  write_seed(dir, "chunked-501", 0, "",
             "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
             "\r\n");
  write_seed(
      dir, "te-and-length-400", 0, "",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
  write_seed(dir, "same-lengths", 0, "",
             "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc");
  write_seed(dir, "different-lengths-400", 0, "",
             "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
  write_seed(dir, "length-413", 0, "",
             "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n");
  write_seed(dir, "length-overflow", 0, "",
             "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n");
  write_seed(dir, "no-host-400", 0, "", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
  write_seed(dir, "two-hosts-400", 0, "", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n");
  write_seed(dir, "obs-fold-400", 0, "", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n");
  write_seed(dir, "bare-cr-400", 0, "", "GET / HTTP/1.1\rHost: h\r\n\r\n");
  write_seed(dir, "space-before-colon-400", 0, "", "GET / HTTP/1.1\r\nHost : h\r\n\r\n");
  write_seed(dir, "http2-505", 0, "", "GET / HTTP/2.0\r\nHost: h\r\n\r\n");
  write_seed(dir, "connection-tokens", 0, "",
             "GET http://h/a/./b/../c?q HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n"
             "connection: CLOSE\r\n\r\n");
  write_seed(dir, "options-star", 0, "", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  write_seed(dir, "small-limits", 1, "\x40\x80", "GET /abc HTTP/1.1\r\nHost: h\r\nA: b\r\n\r\n");
  write_seed(dir, "small-limits-body", 1, "\x70",
             "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbodyGET / HTTP/1.0\r\n\r\n");
  write_seed(dir, "tiny-limits", 2, "\x80", "GET / HTTP/1.0\r\n\r\n");
  // The default limits at their edges: a request line of exactly 8192 bytes, and one more.
  const std::string line = "GET /" + std::string(8192 - 14, 'a') + " HTTP/1.1";
  write_seed(dir, "line-8192", 0, "\xfe", line + "\r\nHost: h\r\n\r\n");
  write_seed(dir, "line-8193-414", 0, "\x80", "GET /a" + line.substr(5) + "\r\n\r\n");
  // A header block of exactly 16384 bytes, with a Host line in it.
  const std::string host = "Host: h\r\n";
  const std::string big = "X: " + std::string(16384 - host.size() - 5, 'v') + "\r\n";
  write_seed(dir, "headers-16384", 0, "\x80", "GET / HTTP/1.1\r\n" + host + big + "\r\n");
  std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 100; ++i) many += "a: b\r\n";
  write_seed(dir, "101-fields-431", 0, "", many + "\r\n");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  weft::fuzzing::write_seeds_if_asked(*argc, *argv, write_seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz(data, size);
  return 0;
}
