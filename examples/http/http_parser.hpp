// weft example HTTP server: a pure HTTP/1.1 request-head parser and response helpers.
//
// Nothing here does I/O or depends on the weft runtime: every function is a pure function of its
// arguments (plus the `request` it fills), so all of them are reentrant and may be called from any
// number of threads at once, as long as no two threads share the same output object. They throw
// nothing but `std::bad_alloc`.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace weft::http {

/// Size limits enforced by `parse_request`. Each is checked on partial input too, so that a client
/// trickling bytes cannot make the server buffer more than about
/// `max_request_line + max_header_bytes` bytes of head.
struct limits {
  /// Longest request line, without its line end (CRLF or LF). Longer -> 414.
  std::size_t max_request_line = 8192;
  /// Largest header block: all field lines after the request line, their line ends included, the
  /// final empty line not included. Larger -> 431.
  std::size_t max_header_bytes = 16384;
  /// Most header field lines. More -> 431.
  std::size_t max_headers = 100;
  /// Largest Content-Length accepted. Larger -> 413.
  std::size_t max_body = std::size_t{1} << 20;
};

/// One header field as received.
struct header {
  /// The field name exactly as received (case preserved); always a non-empty token.
  std::string name;
  /// The field value with leading and trailing SP/HTAB removed; may be empty.
  std::string value;
};

/// A parsed request head.
struct request {
  /// The method token, case-sensitive as received ("GET", "HEAD", ...).
  std::string method;
  /// The raw request-target (not decoded); see `resolve_target`.
  std::string target;
  /// The minor version of HTTP/1.x: 0 or 1.
  int version_minor = 1;
  /// The header fields in the order received.
  std::vector<header> headers;
  /// The Content-Length value; 0 when there is none. The body is not part of the head.
  std::size_t content_length = 0;
  /// Whether the connection may be reused after this request: HTTP/1.1 defaults to true unless a
  /// Connection header lists the token "close"; HTTP/1.0 defaults to false unless a Connection
  /// header lists "keep-alive". Tokens are case-insensitive, comma-separated, over all Connection
  /// fields; "close" wins over "keep-alive".
  bool keep_alive = true;

  /// The value of the first header whose name equals `name` case-insensitively, or an empty view
  /// when there is none (a present but empty field gives an empty view too). The view points into
  /// `headers` and is valid until the request is modified or destroyed. Pure; never throws.
  std::string_view find(std::string_view name) const noexcept;
};

/// Outcome of `parse_request`.
enum class parse_status {
  incomplete,  ///< No error so far, but the head is not complete: call again with more bytes.
  complete,    ///< A whole head was parsed into the request.
  error,       ///< The input is not acceptable; `error_status` says which response to send.
};

/// What `parse_request` found.
struct parse_result {
  /// Which of the three outcomes it is.
  parse_status status = parse_status::incomplete;
  /// When complete: the bytes of the head, counting any skipped leading empty lines, the request
  /// line, the field lines and the final empty line. The body (`content_length` bytes) follows and
  /// is not included. 0 when incomplete or error.
  std::size_t consumed = 0;
  /// When error: 400, 413, 414, 431, 501 or 505. 0 otherwise.
  int error_status = 0;
};

/// Parses one request head from the start of `input`: the bytes received so far on a connection,
/// which may hold part of a request or several pipelined requests (parse the next one from
/// `input.substr(consumed + content_length)`).
///
/// Stateless and incremental: call it again on the longer buffer when more bytes arrive. Results
/// are prefix-consistent: once a prefix of the stream gives `error` (or `complete`), every longer
/// buffer gives the same status (and for `complete` the same `consumed` and request). While the
/// head is incomplete the call only looks for line ends and checks the limits (no validation of
/// field lines, no allocation), so re-parsing a growing buffer stays cheap; a request line already
/// longer than `max_request_line` (414), or a header block already past `max_header_bytes` or
/// `max_headers` (431), is an error at once, before its end arrives. The request line is validated
/// as soon as its line end arrives; field lines once the whole head has arrived.
///
/// Syntax (RFC 9112, strict): lines end in CRLF or a bare LF; a bare CR anywhere is an error. Up to
/// 4 empty lines before the request line are skipped (more -> 400). Request line: method token, one
/// SP, a non-empty target of visible ASCII (0x21-0x7E), one SP, "HTTP/1.0" or "HTTP/1.1"; another
/// "HTTP/<digit>.<digit>" -> 505, anything else malformed -> 400. Field line: a token name followed
/// directly by ':' (whitespace before the colon -> 400), a value without control characters other
/// than HTAB (-> 400); a line starting with SP or HTAB (obs-fold) -> 400.
///
/// Semantics, checked once the head is complete, in this order: Transfer-Encoding together with
/// Content-Length -> 400; any Transfer-Encoding -> 501 (chunked bodies are not supported);
/// HTTP/1.1 without Host, or more than one Host -> 400; Content-Length above `max_body` -> 413.
/// Content-Length must be digits only (-> 400); repeated Content-Length fields must have equal
/// values (-> 400); a value too large for size_t counts as above `max_body`.
///
/// `out` is overwritten on `complete`; on `incomplete` or `error` its contents are unspecified.
/// Pure and reentrant (thread-safe for distinct `out` objects). Throws only `std::bad_alloc`.
parse_result parse_request(std::string_view input, const limits& lim, request& out);

/// How the server treats a method.
enum class method_kind {
  get,              ///< "GET": served.
  head,             ///< "HEAD": served without a body.
  not_allowed,      ///< POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE: 405.
  not_implemented,  ///< Any other method: 501.
};

/// Classifies a method token (case-sensitive, as RFC 9110 says: "get" is not "GET"). Anything that
/// is not one of the standard methods, including a string that is not a token, is
/// `not_implemented` (`parse_request` never yields a non-token method). Pure; never throws.
method_kind classify_method(std::string_view method) noexcept;

/// Result of `resolve_target`.
struct target_result {
  /// 0 on success, else the status to answer with: 400 or 403.
  int error_status = 0;
  /// On success: the decoded path relative to the document root, segments joined by '/', with no
  /// leading, trailing or doubled '/', and no "." or ".." segment; "" for the root. Empty on error.
  std::string path;
};

/// Maps an origin-form request-target to a path relative to a document root.
///
/// Steps: an absolute-form target ("http://host/path", "https://...", scheme case-insensitive)
/// is reduced to its path ("/" when it has none; 400 when it has no authority); the target must
/// then start with '/' (else 400; authority-form and "*" are not served); the query ('?...') and
/// fragment ('#...') are cut off; the rest is percent-decoded ONCE as a whole (an invalid escape
/// such as "%zz" or "%4" -> 400); THEN split on '/', so a decoded
/// "%2f" separates segments like a literal '/' and cannot hide a ".." ("/..%2fetc" -> 403). Empty
/// and "." segments are dropped; a ".." segment -> 403 (also "%2e%2e", "%2E%2e", ...). A decoded
/// byte below 0x20 (NUL included) or 0x7F -> 400; a backslash, literal or decoded, -> 400 (it is a
/// path separator elsewhere, so it is never let through). '+' is not decoded. Bytes >= 0x80 pass
/// (UTF-8 file names). Dot files (".git") are NOT refused here. Pure; throws only std::bad_alloc.
target_result resolve_target(std::string_view target);

/// The Content-Type for a file path, by its extension (case-insensitive): html, htm, txt, css, js,
/// json, png, jpg, jpeg, gif, svg, ico, wasm, pdf; anything else is "application/octet-stream".
/// The text/... types carry "; charset=utf-8". The view refers to a static string. Pure; never
/// throws.
std::string_view content_type_for(std::string_view path) noexcept;

/// The reason phrase of a status code (RFC 9110 wording, e.g. 413 "Content Too Large"), or "" for
/// a code it does not know. The view refers to a static string. Pure; never throws.
std::string_view reason_phrase(int status) noexcept;

/// Builds a response head:
/// "HTTP/1.1 <status> <reason>\r\nServer: weft\r\nContent-Length: <n>\r\nContent-Type: <t>\r\n"
/// "Connection: keep-alive|close\r\n" + extra_headers + "\r\n".
/// The Content-Type line is left out when `content_type` is empty. `extra_headers` is copied as
/// is: whole field lines, each ending in CRLF (CRLF is added after a last line
/// without a line end). Content-Length is
/// always written (for HEAD, pass the length the GET body would have). Pure; throws only
/// std::bad_alloc.
std::string response_head(int status, std::string_view content_type, std::size_t content_length,
                          bool keep_alive, std::string_view extra_headers = {});

/// Like response_head, but appends the head to `out` (no allocation once `out` has room: the
/// server batches the responses of pipelined requests in one buffer). Throws std::bad_alloc.
void append_response_head(std::string& out, int status, std::string_view content_type,
                          std::size_t content_length, bool keep_alive,
                          std::string_view extra_headers = {});

}  // namespace weft::http
