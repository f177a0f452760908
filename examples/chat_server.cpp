// A line-based chat server: clients talk in rooms, every line goes to the others in the room.
//
//   ./chat_server --port=P [--host=127.0.0.1] [--mode=M --workers=N] [--drain-timeout=S]
//                 [--queue-limit=256] [--max-line=4096]
//
// Prints "listening on ADDRESS" once it accepts connections. Try it with `nc 127.0.0.1 P`.
//
// Protocol: lines of text, LF or CR LF terminated (the CR is dropped); empty lines are ignored.
// Every line the server sends ends with LF and is one of:
//   "* ..."        a notice from the server
//   "error: ..."   the last line was refused; nothing changed and the connection stays open
//   "NICK: TEXT"   a message from NICK, a member of the same room
// On connect a client gets "* welcome, you are NICK in lobby; commands: ..." with a unique
// default nick (guest1, guest2...) and is in the room "lobby". Lines starting with '/' are
// commands (words separated by spaces):
//   /join ROOM   leave the current room for ROOM (created on first use, gone when empty). The
//                client gets "* you are now in ROOM"; the old room "* NICK left OLD (joined
//                ROOM)", the new one "* NICK joined ROOM".
//   /nick NAME   rename; NAME must be free server-wide ("error: nick 'NAME' is taken"). The
//                client gets "* you are now known as NAME", the room "* OLD is now known as NAME".
//   /who         "* in ROOM: NICK NICK..." (the members of the current room, sorted)
//   /rooms       "* rooms: ROOM (N), ROOM (N)..." (every room with its member count, sorted)
//   /help        "* commands: ..."
//   /quit        "* bye NICK", then the server closes the connection.
// Room names and nicks are 1 to 32 characters of A-Z a-z 0-9 _ -. Any other line is a message:
// the other members of the room (never the sender, never another room) get "NICK: TEXT", in the
// order the server received them. Bytes that are not UTF-8, and control characters, are replaced
// by U+FFFD, so the others always receive valid UTF-8 text.
//
// Errors: an unknown command, a bad name, a missing argument: an "error: ..." line, and the
// connection stays. A line longer than --max-line bytes (without its CR LF): "error: line longer
// than N bytes; closing the connection", then the connection is closed (skipping the rest of such
// a line would mean reading it all, however long). When a client leaves (quit, closed, reset,
// disconnected), its room gets "* NICK left ROOM (REASON)". A peer that vanishes without a word
// is found by TCP keepalive (about 90 s).
//
// Slow clients: each client has a bounded outgoing queue of --queue-limit lines, drained by a
// writer task into its socket. Broadcasting never waits for a client: when a client's queue is
// full (it does not read), it is disconnected: the server logs one line on stderr, tries for up
// to 2 s to send it "* disconnected: too slow (queue of N lines full)", and closes it; the
// others are not held up.
//
// SIGINT/SIGTERM: stop accepting, tell every client "* server shutting down", close each
// connection once its queued lines are out (at most 3 s, and at most --drain-timeout seconds in
// all), exit 0. Exit status: 0 after such a shutdown, 1 when the port cannot be bound or the
// runtime fails, 2 for a bad command line (with usage on stderr).
// SIGUSR1: write the task dump (every live task and what it waits on) to stderr, keep serving.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>  // fmt::join
#include <CLI/CLI.hpp>
#include <weft/weft.hpp>
#include "server_support.hpp"

namespace {

namespace io = weft::io;
using namespace std::chrono_literals;

constexpr std::string_view kLobby = "lobby";
constexpr std::string_view kCommands =
    "/join ROOM, /nick NAME, /who, /rooms, /help, /quit; other lines go to your room";
constexpr std::size_t kMaxName = 32;
// How long a closing connection may take to send the lines still queued for it (a goodbye, the
// shutdown notice): a client that does not read cannot hold its connection open longer.
constexpr auto kFlushLimit = 3s;
// How long a client disconnected for being too slow gets to take the line that says so.
constexpr auto kKickGrace = 2s;
// The writer sends what is queued in one write, up to about this many bytes.
constexpr std::size_t kBatchBytes = 64 * 1024;

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// `text` as valid UTF-8 without control characters: invalid and overlong sequences, surrogates,
// and C0/C1 controls (tab excepted) become U+FFFD. Other clients' terminals are not a sender's
// to drive with escape sequences, and a client may rely on receiving text.
std::string sanitize(std::string_view text) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      if ((b < 0x20 && b != '\t') || b == 0x7F) {
        out += kReplacement;
      } else {
        out += static_cast<char>(b);
      }
      ++i;
      continue;
    }
    // The length of the sequence, and the smallest code point it may encode (a longer form of
    // a smaller code point is invalid).
    std::size_t length = 0;
    std::uint32_t code = 0, smallest = 0;
    if ((b & 0xE0) == 0xC0) {
      length = 2, code = b & 0x1F, smallest = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      length = 3, code = b & 0x0F, smallest = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      length = 4, code = b & 0x07, smallest = 0x10000;
    }
    bool ok = length > 0 && i + length <= text.size();
    for (std::size_t k = 1; ok && k < length; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      ok = (c & 0xC0) == 0x80;
      code = (code << 6) | (c & 0x3F);
    }
    ok = ok && code >= smallest && code <= 0x10FFFF && !(code >= 0xD800 && code <= 0xDFFF) &&
         !(code >= 0x80 && code < 0xA0);  // C1 controls
    if (ok) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += kReplacement;
      ++i;  // resynchronise on the next byte
    }
  }
  return out;
}

// One connected client. Its connection task owns it (a local of the task's frame); the server's
// maps point to it only between enter() and leave().
struct client {
  client(int socket, std::string address, std::size_t queue_limit)
      : fd(socket), peer(std::move(address)), outbox(queue_limit) {}

  const int fd;            // to shut its reads down from another connection (a disconnect)
  const std::string peer;  // its address, for the log
  // The lines waiting for the writer task. Other connections only try_send into it.
  weft::channel<std::string> outbox;
  // Set (under the server's lock) when it is disconnected for being too slow; read by its own
  // connection task without the lock.
  std::atomic<bool> too_slow{false};
  // The writer's: true while a write is under way, so that a line written after the writer was
  // stopped knows it may follow part of a line. Read by the connection task after the join.
  bool mid_line = false;

  // Guarded by chat_server::mutex_.
  std::string nick;
  std::string room;
  bool present = false;  // in the server's maps
};

// What the reader does after a line.
enum class after_line { go_on, close };

// Rooms and nicks, shared by every connection (on several threads in the threaded modes).
//
// Why a std::mutex and not weft::mutex: every critical section is a few map operations plus
// try_send into bounded channels, which never waits, so no co_await happens under the lock and
// it is held for microseconds; a thread that finds it taken waits that long, never for a client.
// stop() also runs in the plain on_stop callback, which cannot co_await a weft::mutex. Holding
// one lock across a whole broadcast is also what gives every member of a room the same order of
// messages. Lock order: mutex_, then a channel's internal lock (inside try_send); a channel never
// calls back into the server (waking the writer only queues it on its executor).
class chat_server {
 public:
  chat_server(std::size_t queue_limit, std::size_t max_line)
      : queue_limit_(queue_limit), max_line_(max_line) {}

  std::size_t queue_limit() const { return queue_limit_; }
  std::size_t max_line() const { return max_line_; }

  // Gives `c` a free guestN nick, puts it in the lobby and greets it. False when the server is
  // stopping (then `c` is told so and is not entered).
  bool enter(client& c) {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      deliver(c, "* server shutting down\n");
      return false;
    }
    do {
      c.nick = fmt::format("guest{}", next_guest_++);
    } while (nicks_.contains(c.nick));
    c.room = kLobby;
    c.present = true;
    nicks_.emplace(c.nick, &c);
    rooms_[c.room].push_back(&c);
    reply(c, fmt::format("* welcome, you are {} in {}; commands: {}\n", c.nick, c.room, kCommands));
    broadcast(c.room, &c, fmt::format("* {} joined {}\n", c.nick, c.room));
    return c.present;
  }

  // Acts on one line from `c` (without its line end).
  after_line handle_line(client& c, std::string_view line) {
    if (line.empty()) return after_line::go_on;
    std::lock_guard lock(mutex_);
    if (!c.present) return after_line::close;  // disconnected meanwhile
    if (line.front() != '/') {
      broadcast(c.room, &c, fmt::format("{}: {}\n", c.nick, sanitize(line)));
      return after_line::go_on;
    }
    std::vector<std::string_view> words;
    for (std::size_t i = 0; i < line.size();) {
      const std::size_t end = std::min(line.find(' ', i), line.size());
      if (end > i) words.push_back(line.substr(i, end - i));
      i = end + 1;
    }
    const std::string_view command = words.front();
    const auto want_one_name = [&](std::string_view usage) -> std::optional<std::string_view> {
      if (words.size() != 2) {
        reply(c, fmt::format("error: usage: {}\n", usage));
        return std::nullopt;
      }
      if (!valid_name(words[1])) {
        reply(c, fmt::format("error: invalid name '{}': 1 to {} characters of A-Z a-z 0-9 _ -\n",
                             sanitize(words[1].substr(0, 64)), kMaxName));
        return std::nullopt;
      }
      return words[1];
    };
    const auto want_no_argument = [&] {
      if (words.size() == 1) return true;
      reply(c, fmt::format("error: {} takes no argument\n", command));
      return false;
    };
    if (command == "/join") {
      if (auto room = want_one_name("/join ROOM")) join(c, *room);
    } else if (command == "/nick") {
      if (auto nick = want_one_name("/nick NAME")) rename(c, *nick);
    } else if (command == "/who") {
      if (want_no_argument()) {
        std::vector<std::string_view> names;
        for (const client* m : rooms_[c.room]) names.push_back(m->nick);
        std::sort(names.begin(), names.end());
        reply(c, fmt::format("* in {}: {}\n", c.room, fmt::join(names, " ")));
      }
    } else if (command == "/rooms") {
      if (want_no_argument()) {
        std::vector<std::string> listed;
        for (const auto& [name, members] : rooms_) {
          listed.push_back(fmt::format("{} ({})", name, members.size()));
        }
        reply(c, fmt::format("* rooms: {}\n", fmt::join(listed, ", ")));
      }
    } else if (command == "/help") {
      if (want_no_argument()) reply(c, fmt::format("* commands: {}\n", kCommands));
    } else if (command == "/quit") {
      reply(c, fmt::format("* bye {}\n", c.nick));
      remove(c, "quit");
    } else {
      reply(c, fmt::format("error: unknown command '{}' (try /help)\n",
                           sanitize(command.substr(0, 64))));
    }
    return c.present ? after_line::go_on : after_line::close;
  }

  // Tells `c` its line was too long and takes it out (the connection then closes).
  void refuse_long_line(client& c) {
    std::lock_guard lock(mutex_);
    if (!c.present) return;
    reply(c, fmt::format("error: line longer than {} bytes; closing the connection\n", max_line_));
    remove(c, "line too long");
  }

  // Takes `c` out of its room and frees its nick, telling the room why; does nothing if it is
  // out already (it quit, or was disconnected as too slow).
  void leave(client& c, std::string_view reason) {
    std::lock_guard lock(mutex_);
    remove(c, reason);
  }

  // On SIGINT/SIGTERM: tells every client, and shuts their reads down, so that each connection
  // ends once its queue is out (chat connections are idle by nature: the drain would otherwise
  // last the whole drain timeout). Connections not entered yet are turned away by enter().
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [nick, c] : nicks_) {
      deliver(*c, "* server shutting down\n");
      ::shutdown(c->fd, SHUT_RD);  // its pending read ends with end of stream
    }
  }

 private:
  // Everything below runs with mutex_ held.

  // Queues `line` for `c`; false when its queue is full. A closed queue (its writer is gone, the
  // connection is ending) takes nothing and counts as delivered.
  static bool deliver(client& c, std::string line) {
    try {
      return c.outbox.try_send(std::move(line));
    } catch (const std::system_error&) {  // errc::channel_closed
      return true;
    }
  }

  // An answer to `c` itself. A client that sends commands but never reads the answers is too
  // slow as well.
  void reply(client& c, std::string line) {
    if (!deliver(c, std::move(line))) disconnect_slow(c);
  }

  // Queues `line` for every member of `room` but `except`. Members whose queue is full are
  // disconnected after the loop, since that changes the room.
  void broadcast(const std::string& room, const client* except, const std::string& line) {
    auto it = rooms_.find(room);
    if (it == rooms_.end()) return;
    std::vector<client*> slow;
    for (client* m : it->second) {
      if (m != except && !deliver(*m, line)) slow.push_back(m);
    }
    for (client* m : slow) disconnect_slow(*m);
  }

  void disconnect_slow(client& c) {
    if (!c.present || c.too_slow.exchange(true)) return;
    fmt::print(stderr, "chat_server: disconnected {} ({}): too slow (queue of {} lines full)\n",
               c.nick, c.peer, queue_limit_);
    // Its reader ends with end of stream; its connection task then stops the writer (which may
    // be stuck in a write that this client does not read) and sends the reason.
    ::shutdown(c.fd, SHUT_RD);
    remove(c, "too slow");
  }

  void remove(client& c, std::string_view reason) {
    if (!c.present) return;
    c.present = false;
    nicks_.erase(c.nick);
    leave_room(c);
    if (!stopping_) {
      broadcast(c.room, nullptr, fmt::format("* {} left {} ({})\n", c.nick, c.room, reason));
    }
  }

  void leave_room(client& c) {
    auto it = rooms_.find(c.room);
    if (it == rooms_.end()) return;
    std::erase(it->second, &c);
    if (it->second.empty()) rooms_.erase(it);
  }

  void join(client& c, std::string_view room) {
    if (room == c.room) {
      reply(c, fmt::format("error: already in {}\n", c.room));
      return;
    }
    leave_room(c);  // looks the room up by c.room: before it changes
    const std::string old = std::exchange(c.room, std::string(room));
    broadcast(old, nullptr, fmt::format("* {} left {} (joined {})\n", c.nick, old, c.room));
    rooms_[c.room].push_back(&c);
    reply(c, fmt::format("* you are now in {}\n", c.room));
    if (c.present) broadcast(c.room, &c, fmt::format("* {} joined {}\n", c.nick, c.room));
  }

  void rename(client& c, std::string_view nick) {
    if (nick == c.nick) {
      reply(c, fmt::format("error: you are {} already\n", c.nick));
      return;
    }
    if (nicks_.contains(nick)) {
      reply(c, fmt::format("error: nick '{}' is taken\n", nick));
      return;
    }
    const std::string old = std::exchange(c.nick, std::string(nick));
    nicks_.erase(old);
    nicks_.emplace(c.nick, &c);
    reply(c, fmt::format("* you are now known as {}\n", c.nick));
    if (c.present) broadcast(c.room, &c, fmt::format("* {} is now known as {}\n", old, c.nick));
  }

  const std::size_t queue_limit_;
  const std::size_t max_line_;
  std::mutex mutex_;
  std::map<std::string, std::vector<client*>, std::less<>> rooms_;  // never an empty room
  std::map<std::string, client*, std::less<>> nicks_;               // every client present
  std::uint64_t next_guest_ = 1;
  bool stopping_ = false;
};

// Sends `c`'s queued lines to its socket until the queue is closed and empty, the socket fails,
// or the task is cancelled.
weft::task<> write_loop(const io::tcp_stream& conn, client& c) {
  std::string batch;
  try {
    for (;;) {
      auto line = co_await c.outbox.recv();
      if (!line) break;  // closed and drained: the connection is ending
      batch = std::move(*line);
      while (batch.size() < kBatchBytes) {
        auto more = c.outbox.try_recv();
        if (!more) break;
        batch += *more;
      }
      c.mid_line = true;
      if (!co_await conn.write_all(io::as_bytes(batch))) {
        // The peer is gone (reset, or it shut its reading down): end the connection, whose
        // reader might otherwise wait on. The closed queue takes no more lines.
        c.outbox.close();
        ::shutdown(conn.native_handle(), SHUT_RD);
        break;
      }
      c.mid_line = false;
    }
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::cancelled) fmt::print(stderr, "chat_server: {}\n", e.what());
  }
}

// Reads lines from `conn` and acts on them until the client quits, closes, sends an overlong
// line, or is disconnected. Gives the reason its room is told.
weft::task<std::string_view> read_loop(const io::tcp_stream& conn, chat_server& server, client& c) {
  std::string pending;  // bytes received that do not make a whole line yet
  std::array<std::byte, 4096> chunk;
  for (;;) {
    std::size_t start = 0;
    for (std::size_t end; (end = pending.find('\n', start)) != std::string::npos; start = end + 1) {
      std::string_view line(pending.data() + start, end - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.size() > server.max_line()) {
        server.refuse_long_line(c);
        co_return "line too long";
      }
      if (server.handle_line(c, line) == after_line::close) co_return "quit";
    }
    pending.erase(0, start);
    // No line end yet: more than max_line bytes (and a CR) can only be an overlong line.
    if (pending.size() > server.max_line() + 1) {
      server.refuse_long_line(c);
      co_return "line too long";
    }
    auto n = co_await conn.read(chunk);
    if (!n || *n == 0) co_return "connection closed";
    pending.append(reinterpret_cast<const char*>(chunk.data()), *n);
  }
}

// Chat connections are idle by nature, so an idle timeout would drop quiet clients; TCP
// keepalive finds the peers that vanished without a FIN or a reset (a machine gone, a network
// cut) within about 90 s instead. Best effort: a failure leaves the connection as it was.
void enable_keepalive(int fd) {
  const int on = 1, idle_s = 60, interval_s = 10, probes = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

weft::task<> serve_chat(io::tcp_stream conn, chat_server& server) {
  enable_keepalive(conn.native_handle());
  auto address = conn.peer_address();
  client c(conn.native_handle(), address ? address->to_string() : std::string("?"),
           server.queue_limit());
  weft::task_group writer;  // the writer task, in a group of its own so that it can be stopped
  std::string_view reason = "connection closed";
  try {
    writer.spawn(write_loop(conn, c));
    if (server.enter(c)) reason = co_await read_loop(conn, server, c);
  } catch (const std::system_error& e) {
    if (e.code() != weft::errc::cancelled) fmt::print(stderr, "chat_server: {}\n", e.what());
  } catch (const std::bad_alloc&) {
    fmt::print(stderr, "chat_server: out of memory on one connection; closing it\n");
  }
  // From here on nobody else queues lines for `c`.
  server.leave(c, reason);
  const bool too_slow = c.too_slow.load();
  if (!too_slow) {
    // Let the writer send what is queued (a goodbye, an error, the shutdown notice), briefly.
    c.outbox.close();
    try {
      co_await weft::with_timeout(kFlushLimit,
                                  weft::invoke([&]() -> weft::task<> { co_await writer.join(); }));
    } catch (const std::system_error&) {  // timed out, or this task was cancelled
    }
  }
  // The writer must end before `conn` and `c` do; join() waits for it even when this task has
  // been cancelled.
  writer.cancel();
  try {
    co_await writer.join();
  } catch (const std::system_error&) {
  }
  if (too_slow) {
    // Best effort: the writer was stopped, perhaps in the middle of a line, and the client may
    // yet start reading.
    const std::string last = fmt::format("{}* disconnected: too slow (queue of {} lines full)\n",
                                         c.mid_line ? "\n" : "", server.queue_limit());
    try {
      (void)co_await weft::with_timeout(kKickGrace, conn.write_all(io::as_bytes(last)));
    } catch (const std::system_error&) {  // timed out, or this task was cancelled
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"chat_server: a line-based chat in rooms"};
  examples::server_options options;
  options.add_to(app);
  std::size_t queue_limit = 256, max_line = 4096;
  app.add_option("--queue-limit", queue_limit,
                 "lines queued for a client before it is disconnected as too slow")
      ->capture_default_str();
  app.add_option("--max-line", max_line, "longest line accepted from a client, in bytes")
      ->capture_default_str();
  if (auto status = examples::parse_or_exit(app, argc, argv, options, "chat_server")) {
    return *status;
  }
  if (queue_limit < 1 || queue_limit > 1'000'000) {
    fmt::print(stderr, "chat_server: --queue-limit wants 1 to 1000000 lines\n{}", app.help());
    return 2;
  }
  if (max_line < 16 || max_line > (1u << 20)) {
    fmt::print(stderr, "chat_server: --max-line wants 16 to 1048576 bytes\n{}", app.help());
    return 2;
  }
  chat_server server(queue_limit, max_line);
  return examples::run_server(
      options, "chat_server", [&](io::tcp_stream c) { return serve_chat(std::move(c), server); },
      [&] { server.stop(); });
}
