// weft example HTTP server: request-head parser and response helpers (see http_parser.hpp).
#include "http_parser.hpp"

#include <array>
#include <charconv>
#include <limits>

namespace weft::http {

namespace {

constexpr std::size_t npos = std::string_view::npos;

/// Empty lines tolerated before a request line (RFC 9112 2.2 asks for at least one).
constexpr std::size_t kMaxLeadingEmptyLines = 4;

/// tchar of RFC 9110 5.6.2: the characters of a token (method, field name).
constexpr std::array<bool, 256> make_token_table() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kToken = make_token_table();

bool is_tchar(char c) {
  return kToken[static_cast<unsigned char>(c)];
}

/// A request-target byte: visible ASCII only (no SP, no controls, no obs-text).
bool is_target_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7F;
}

/// A field-value byte: HTAB, SP, VCHAR or obs-text; every other control (CR included) is refused.
bool is_field_value_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7F);
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

parse_result fail(int status) {
  return {parse_status::error, 0, status};
}

/// Content of a line ending at the LF at `lf`, starting at `begin`: a CR right before the LF is the
/// line end's, not the content's.
std::string_view line_content(std::string_view input, std::size_t begin, std::size_t lf) {
  std::size_t end = lf;
  if (end > begin && input[end - 1] == '\r') --end;
  return input.substr(begin, end - begin);
}

/// Bytes of a line that has no LF yet and starts at `begin`: a trailing CR may still become the
/// line end, so it is not counted.
std::size_t partial_length(std::string_view input, std::size_t begin) {
  std::size_t n = input.size() - begin;
  if (n > 0 && input.back() == '\r') --n;
  return n;
}

struct request_line {
  std::string_view method;
  std::string_view target;
  int version_minor = 1;
};

/// Validates a request line (without its line end); 0 or the error status.
int parse_request_line(std::string_view line, request_line& out) {
  std::size_t i = 0;
  while (i < line.size() && is_tchar(line[i])) ++i;
  if (i == 0 || i == line.size() || line[i] != ' ') return 400;
  out.method = line.substr(0, i);
  const std::size_t target_begin = ++i;
  while (i < line.size() && is_target_char(line[i])) ++i;
  if (i == target_begin || i == line.size() || line[i] != ' ') return 400;
  out.target = line.substr(target_begin, i - target_begin);
  const std::string_view version = line.substr(i + 1);
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) ||
      version[6] != '.' || !digit(version[7]))
    return 400;
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) return 505;
  out.version_minor = version[7] - '0';
  return 0;
}

/// Parses a Content-Length value: digits only, saturated at SIZE_MAX. False when malformed.
bool parse_content_length(std::string_view v, std::size_t& out) {
  if (v.empty()) return false;
  constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();
  std::size_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    const auto d = static_cast<std::size_t>(c - '0');
    n = (n > (kMax - d) / 10) ? kMax : n * 10 + d;
  }
  out = n;
  return true;
}

/// Calls `f(token)` for each non-empty element of a comma-separated list, OWS trimmed.
template <class F>
void for_each_list_token(std::string_view list, F&& f) {
  while (true) {
    const std::size_t comma = list.find(',');
    const std::string_view tok = trim_ows(list.substr(0, comma));
    if (!tok.empty()) f(tok);
    if (comma == npos) return;
    list.remove_prefix(comma + 1);
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string_view request::find(std::string_view name) const noexcept {
  for (const header& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

parse_result parse_request(std::string_view input, const limits& lim, request& out) {
  std::size_t pos = 0;

  // Leading empty lines.
  for (std::size_t skipped = 0;; ++skipped) {
    if (pos == input.size()) return {};
    std::size_t n = 0;
    if (input[pos] == '\n') {
      n = 1;
    } else if (input[pos] == '\r') {
      if (pos + 1 == input.size()) return {};
      if (input[pos + 1] == '\n') n = 2;
    }
    if (n == 0) break;
    if (skipped == kMaxLeadingEmptyLines) return fail(400);
    pos += n;
  }

  // The request line: its length is checked before its end arrives, its syntax once it has.
  std::size_t lf = input.find('\n', pos);
  if (lf == npos) {
    if (partial_length(input, pos) > lim.max_request_line) return fail(414);
    return {};
  }
  const std::string_view line = line_content(input, pos, lf);
  if (line.size() > lim.max_request_line) return fail(414);
  request_line rl;
  if (int status = parse_request_line(line, rl); status != 0) return fail(status);
  pos = lf + 1;

  // Find the end of the header block, checking only the limits on the way: this is the whole cost
  // of a call while the head is incomplete.
  const std::size_t block_begin = pos;
  std::size_t field_count = 0;
  while (true) {
    lf = input.find('\n', pos);
    if (lf == npos) {
      if (partial_length(input, block_begin) > lim.max_header_bytes) return fail(431);
      return {};
    }
    if (lf == pos || (lf == pos + 1 && input[pos] == '\r')) break;  // the final empty line
    if (lf + 1 - block_begin > lim.max_header_bytes) return fail(431);
    if (++field_count > lim.max_headers) return fail(431);
    pos = lf + 1;
  }
  const std::size_t block_end = pos;
  const std::size_t head_end = lf + 1;

  // The head is complete: validate the field lines and fill `out`.
  out.method.assign(rl.method);
  out.target.assign(rl.target);
  out.version_minor = rl.version_minor;
  out.headers.resize(field_count);
  out.content_length = 0;

  bool has_content_length = false;
  bool has_transfer_encoding = false;
  std::size_t host_count = 0;
  bool connection_close = false;
  bool connection_keep_alive = false;

  pos = block_begin;
  for (std::size_t index = 0; pos < block_end; ++index) {
    lf = input.find('\n', pos);
    const std::string_view field = line_content(input, pos, lf);
    pos = lf + 1;

    // A field line starting with whitespace is obs-fold (or junk before the first field).
    std::size_t i = 0;
    while (i < field.size() && is_tchar(field[i])) ++i;
    if (i == 0 || i == field.size() || field[i] != ':') return fail(400);
    const std::string_view name = field.substr(0, i);
    const std::string_view raw_value = field.substr(i + 1);
    for (char c : raw_value)
      if (!is_field_value_char(c)) return fail(400);
    const std::string_view value = trim_ows(raw_value);

    header& h = out.headers[index];
    h.name.assign(name);
    h.value.assign(value);

    if (iequals(name, "content-length")) {
      std::size_t n = 0;
      if (!parse_content_length(value, n)) return fail(400);
      if (has_content_length && n != out.content_length) return fail(400);
      has_content_length = true;
      out.content_length = n;
    } else if (iequals(name, "transfer-encoding")) {
      has_transfer_encoding = true;
    } else if (iequals(name, "host")) {
      ++host_count;
    } else if (iequals(name, "connection")) {
      for_each_list_token(value, [&](std::string_view tok) {
        if (iequals(tok, "close")) connection_close = true;
        if (iequals(tok, "keep-alive")) connection_keep_alive = true;
      });
    }
  }

  if (has_transfer_encoding && has_content_length) return fail(400);
  if (has_transfer_encoding) return fail(501);
  if (host_count > 1 || (rl.version_minor == 1 && host_count == 0)) return fail(400);
  if (out.content_length > lim.max_body) return fail(413);

  out.keep_alive = !connection_close && (rl.version_minor == 1 || connection_keep_alive);
  return {parse_status::complete, head_end, 0};
}

method_kind classify_method(std::string_view method) noexcept {
  if (method == "GET") return method_kind::get;
  if (method == "HEAD") return method_kind::head;
  for (std::string_view m : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
    if (method == m) return method_kind::not_allowed;
  return method_kind::not_implemented;
}

target_result resolve_target(std::string_view target) {
  // Absolute-form ("http://host/path"), which RFC 9112 says a server must accept: the path part
  // is what is served (the authority is not checked: this server has one site).
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (target.size() >= scheme.size() &&
        std::equal(scheme.begin(), scheme.end(), target.begin(),
                   [](char a, char b) { return a == (b | 0x20); })) {
      const std::size_t slash = target.find('/', scheme.size());
      if (slash == scheme.size()) return {400, {}};  // no authority
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target.front() != '/') return {400, {}};
  target = target.substr(0, target.find_first_of("?#"));

  // Decode the whole path once, then split: a decoded '/' is a separator like a literal one, so
  // "..%2f" cannot smuggle a ".." segment through.
  std::string decoded;
  decoded.reserve(target.size());
  for (std::size_t i = 0; i < target.size(); ++i) {
    char c = target[i];
    if (c == '%') {
      if (i + 2 >= target.size()) return {400, {}};
      const int hi = hex_value(target[i + 1]);
      const int lo = hex_value(target[i + 2]);
      if (hi < 0 || lo < 0) return {400, {}};
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F || c == '\\') return {400, {}};
    decoded.push_back(c);
  }

  target_result result;
  std::string_view rest = decoded;
  while (!rest.empty()) {
    const std::size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    rest.remove_prefix(slash == npos ? rest.size() : slash + 1);
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") return {403, {}};
    if (!result.path.empty()) result.path.push_back('/');
    result.path.append(segment);
  }
  return result;
}

std::string_view content_type_for(std::string_view path) noexcept {
  constexpr std::string_view kDefault = "application/octet-stream";
  const std::size_t slash = path.rfind('/');
  const std::string_view base = slash == npos ? path : path.substr(slash + 1);
  const std::size_t dot = base.rfind('.');
  // As in Python's splitext: a dot file such as ".html" has no extension.
  if (dot == npos || base.find_first_not_of('.') > dot) return kDefault;
  const std::string_view ext = base.substr(dot + 1);
  struct entry {
    std::string_view ext;
    std::string_view type;
  };
  static constexpr entry kTypes[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"txt", "text/plain; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"svg", "image/svg+xml"},
      {"ico", "image/x-icon"},
      {"wasm", "application/wasm"},
      {"pdf", "application/pdf"},
  };
  for (const entry& e : kTypes)
    if (iequals(ext, e.ext)) return e.type;
  return kDefault;
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
  }
}

void append_response_head(std::string& head, int status, std::string_view content_type,
                          std::size_t content_length, bool keep_alive,
                          std::string_view extra_headers) {
  char number[24];
  head.append("HTTP/1.1 ");
  head.append(number, std::to_chars(number, number + sizeof number, status).ptr);
  head.push_back(' ');
  head.append(reason_phrase(status));
  head.append("\r\nServer: weft\r\nContent-Length: ");
  head.append(number, std::to_chars(number, number + sizeof number, content_length).ptr);
  head.append("\r\n");
  if (!content_type.empty()) {
    head.append("Content-Type: ");
    head.append(content_type);
    head.append("\r\n");
  }
  head.append(keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  if (!extra_headers.empty()) {
    head.append(extra_headers);
    if (!extra_headers.ends_with('\n')) head.append("\r\n");
  }
  head.append("\r\n");
}

std::string response_head(int status, std::string_view content_type, std::size_t content_length,
                          bool keep_alive, std::string_view extra_headers) {
  std::string head;
  head.reserve(128 + content_type.size() + extra_headers.size());
  append_response_head(head, status, content_type, content_length, keep_alive, extra_headers);
  return head;
}

}  // namespace weft::http
