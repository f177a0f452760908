// Seeing inside: task ids and names, the task dump, the trace buffers and file, live metrics,
// the runtime handle and the spawn/exit hooks, on every mode.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>
#include <weft/weft.hpp>

using namespace std::chrono_literals;

namespace {

const weft::mode modes[] = {weft::mode::cooperative, weft::mode::single_lock,
                            weft::mode::multi_thread};

weft::run_options options_for(weft::mode m) {
  weft::run_options o;
  o.mode = m;
  o.workers = m == weft::mode::cooperative ? 1 : 2;
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string temp_path(const char* what) {
  return "/tmp/weft_trace_test_" + std::to_string(::getpid()) + "_" + what + ".json";
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The line of `dump` that mentions `needle`, or "".
std::string line_with(const std::string& dump, const std::string& needle) {
  std::istringstream in(dump);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return {};
}

weft::task<std::uint64_t> nested_id() {
  co_await weft::yield_now();
  co_return weft::this_task::id();
}

weft::task<std::pair<std::uint64_t, std::string>> who_am_i() {
  const std::uint64_t outer = weft::this_task::id();
  const std::uint64_t inner = co_await nested_id();  // an awaited task belongs to its spawner
  CHECK(inner == outer);
  co_await weft::sleep_for(1ms);
  CHECK(weft::this_task::id() == outer);  // still itself after a suspension
  co_return std::pair{outer, std::string(weft::this_task::name())};
}

}  // namespace

TEST_CASE("tasks have ids and names, readable from inside", "[trace]") {
  CHECK(weft::this_task::id() == 0);  // outside any task
  for (weft::mode m : modes) {
    INFO(weft::to_string(m));
    weft::run(options_for(m), []() -> weft::task<> {
      CHECK(weft::this_task::name() == "main");
      const std::uint64_t main_id = weft::this_task::id();
      CHECK(main_id != 0);
      auto named = co_await weft::spawn(who_am_i(), {.name = "conn 7"});
      auto unnamed = co_await weft::spawn(who_am_i());
      CHECK(named.second == "conn 7");
      CHECK(unnamed.second.empty());
      CHECK(named.first != 0);
      CHECK(named.first != unnamed.first);
      CHECK(named.first != main_id);
      CHECK(weft::this_task::id() == main_id);
    }());
  }
}

TEST_CASE("run_options hooks see every spawn and every end", "[trace]") {
  for (weft::mode m : modes) {
    INFO(weft::to_string(m));
    std::atomic<int> spawned{0}, ended{0};
    std::mutex names_mutex;
    std::set<std::string> names;
    std::set<std::uint64_t> ids;
    auto o = options_for(m);
    o.on_task_spawn = [&](const weft::task_info& t) {
      spawned.fetch_add(1);
      std::lock_guard lock(names_mutex);
      names.insert(std::string(t.name));
      ids.insert(t.id);
    };
    o.on_task_exit = [&](const weft::task_info& t) {
      ended.fetch_add(1);
      std::lock_guard lock(names_mutex);
      CHECK(ids.count(t.id) == 1);
    };
    weft::run(o, []() -> weft::task<> {
      std::vector<weft::join_handle<void>> handles;
      for (int i = 0; i < 10; ++i) {
        handles.push_back(
            weft::spawn([]() -> weft::task<> { co_await weft::yield_now(); }(), {.name = "child"}));
      }
      for (auto& h : handles) co_await h;
    }());
    CHECK(spawned.load() == 11);  // the main task and its ten children
    CHECK(ended.load() == 11);
    CHECK(names.count("child") == 1);
    CHECK(ids.size() == 11);
  }
}

namespace {

weft::task<> dumped_tasks(weft::mode m) {
  auto pipe = weft::io::make_pipe();
  REQUIRE(pipe);
  auto& [reader, writer] = *pipe;
  weft::mutex mutex;
  weft::event event;
  weft::channel<int> channel;
  auto guard = co_await mutex.scoped_lock();
  std::byte buffer[16];
  auto read =
      weft::spawn(weft::invoke([&]() -> weft::task<> { (void)co_await reader.read(buffer); }),
                  {.name = "reader"});
  auto sleeper = weft::spawn(weft::invoke([]() -> weft::task<> { co_await weft::sleep_for(30s); }),
                             {.name = "sleeper"});
  auto locker =
      weft::spawn(weft::invoke([&]() -> weft::task<> { auto g = co_await mutex.scoped_lock(); }),
                  {.name = "locker"});
  auto waiter = weft::spawn(weft::invoke([&]() -> weft::task<> { co_await event.wait(); }),
                            {.name = "eventer"});
  auto receiver = weft::spawn(
      weft::invoke([&]() -> weft::task<> { (void)co_await channel.recv(); }), {.name = "receiver"});
  auto joiner =
      weft::spawn(weft::invoke([&]() -> weft::task<> { co_await sleeper; }), {.name = "joiner"});
  co_await weft::sleep_for(50ms);  // every task is now in its wait

  std::string dump = weft::task_dump();
  if (m != weft::mode::cooperative) {
    // The threaded executors list their tasks from any thread, through the runtime handle.
    weft::runtime_handle rt = weft::runtime_handle::current();
    REQUIRE(rt.valid());
    std::string foreign;
    std::thread t([&] { foreign = rt.dump(); });
    t.join();
    CHECK(count_of(foreign, "\n") == count_of(dump, "\n"));
  }
  INFO(dump);
  std::istringstream lines(dump);
  for (std::string line; std::getline(lines, line);) CHECK(line.rfind("task ", 0) == 0);
  const std::string fd = " fd " + std::to_string(reader.native_handle());
  CHECK(line_with(dump, "\"reader\" waiting on read" + fd + " (pipe:[") != "");
  CHECK(line_with(dump, "\"sleeper\" waiting on sleep until +") != "");
  CHECK(line_with(dump, "\"locker\" waiting on weft::mutex::lock for ") != "");
  CHECK(line_with(dump, "\"eventer\" waiting on weft::event::wait") != "");
  CHECK(line_with(dump, "\"receiver\" waiting on weft::channel::recv") != "");
  CHECK(line_with(dump, "\"joiner\" waiting on join task ") != "");
  CHECK(line_with(dump, "\"main\" running") != "");

  // Let everything finish.
  guard.unlock();
  event.set();
  channel.close();
  (void)co_await writer.write(std::as_bytes(std::span("x", 1)));
  co_await read;
  co_await locker;
  co_await waiter;
  co_await receiver;
  sleeper.cancel();  // a join does not end with its joiner's cancellation: the sleep must end
  try {
    co_await joiner;
  } catch (const std::system_error&) {
  }
}

}  // namespace

TEST_CASE("the task dump names what each task waits on", "[trace][dump]") {
  for (weft::mode m : modes) {
    INFO(weft::to_string(m));
    weft::run(options_for(m), dumped_tasks(m));
  }
  CHECK(weft::task_dump().find("outside weft::run") != std::string::npos);
}

TEST_CASE("a trace is written on every mode, with a thread name per executor thread", "[trace]") {
  for (weft::mode m : modes) {
    INFO(weft::to_string(m));
    auto o = options_for(m);
    o.trace_path = temp_path("modes");
    weft::run(o, []() -> weft::task<> {
      std::vector<weft::join_handle<void>> handles;
      for (int i = 0; i < 4; ++i) {
        handles.push_back(weft::spawn(
            []() -> weft::task<> {
              for (int j = 0; j < 3; ++j) co_await weft::sleep_for(1ms);
            }(),
            {.name = "sleepy \"quoted\""}));
      }
      for (auto& h : handles) co_await h;
    }());
    const std::string json = read_file(o.trace_path);
    std::remove(o.trace_path.c_str());
    CHECK(json.rfind("{\"traceEvents\":[", 0) == 0);
    CHECK(count_of(json, "\"ph\":\"M\"") == o.workers);
    CHECK(count_of(json, "\"name\":\"run\"") >= 5);
    CHECK(json.find("\"name\":\"sleepy \\\"quoted\\\"\"") != std::string::npos);
    CHECK(json.find("\"dropped_events\":0}") != std::string::npos);
    CHECK(json.find(std::string("\"mode\":\"") + std::string(weft::to_string(m)) + "\"") !=
          std::string::npos);
    if (m == weft::mode::single_lock) CHECK(json.find("\"name\":\"lock\"") != std::string::npos);
  }
}

TEST_CASE("a full trace buffer drops and counts instead of growing", "[trace]") {
  weft::detail::trace_buffer b(4);
  for (int i = 0; i < 10; ++i) b.instant("x", i);
  CHECK(b.events().size() == 4);
  CHECK(b.events().capacity() == 4);
  CHECK(b.dropped() == 6);

  auto o = options_for(weft::mode::cooperative);
  o.trace_path = temp_path("full");
  o.trace_events = 8;
  weft::run(o, []() -> weft::task<> {
    for (int i = 0; i < 100; ++i) co_await weft::yield_now();
  }());
  const std::string json = read_file(o.trace_path);
  std::remove(o.trace_path.c_str());
  CHECK(count_of(json, "\"ph\":") == 8 + 1);  // eight events and the thread's name
  CHECK(json.find("\"dropped_events\":0") == std::string::npos);
  CHECK(json.find("\"dropped_per_thread\":[") != std::string::npos);
}

TEST_CASE("metrics and spawn through the runtime handle, from a foreign thread", "[trace]") {
  for (weft::mode m : modes) {
    INFO(weft::to_string(m));
    weft::runtime_handle kept;
    weft::run(options_for(m), [&kept, m]() -> weft::task<> {
      weft::runtime_handle rt = weft::runtime_handle::current();
      REQUIRE(rt.valid());
      kept = rt;
      std::vector<weft::join_handle<void>> handles;
      for (int i = 0; i < 5; ++i) {
        handles.push_back(weft::spawn([]() -> weft::task<> { co_await weft::sleep_for(1ms); }()));
      }
      for (auto& h : handles) co_await h;
      weft::event done;
      std::atomic<bool> ran{false};
      weft::runtime_metrics seen;
      std::string foreign_dump;
      std::thread t([&] {
        seen = rt.metrics();
        foreign_dump = rt.dump();
        rt.spawn(weft::invoke([&]() -> weft::task<> {
                   ran = true;
                   done.set();
                   co_return;
                 }),
                 {.name = "from outside"})
            .detach();
      });
      co_await done.wait();
      t.join();
      CHECK(ran.load());
      if (m == weft::mode::cooperative) {  // its task list belongs to its thread
        CHECK(foreign_dump.find("can only be listed from its own thread") != std::string::npos);
      } else {
        CHECK(foreign_dump.find("\"main\" ") != std::string::npos);  // running or waiting
      }
      CHECK(seen.mode == m);
      CHECK(seen.workers == (m == weft::mode::cooperative ? 1u : 2u));
      REQUIRE(seen.per_worker.size() == seen.workers);
      CHECK(seen.tasks_spawned >= 6);
      CHECK(seen.tasks_alive >= 1);  // main
      CHECK(seen.tasks_finished == seen.tasks_spawned - seen.tasks_alive);
      std::uint64_t timers = 0, run = 0;
      for (const auto& w : seen.per_worker) {
        timers += w.timers_fired;
        run += w.tasks_run;
      }
      CHECK(timers >= 5);
      CHECK(run >= 6);
      if (m == weft::mode::single_lock) CHECK(seen.single_lock.acquisitions > 0);
      if (m == weft::mode::multi_thread) CHECK(seen.multi_thread.tasks_run > 0);
    }());
    REQUIRE(kept.valid());
    CHECK_THROWS_AS(kept.metrics(), std::system_error);
    CHECK_THROWS_AS(kept.spawn(weft::invoke([]() -> weft::task<> { co_return; })),
                    std::system_error);
  }
  CHECK_FALSE(weft::runtime_handle::current().valid());
}

TEST_CASE("a trace that cannot be written does not fail the program", "[trace]") {
  auto o = options_for(weft::mode::multi_thread);
  o.trace_path = "/nonexistent-directory/trace.json";
  const int value = weft::run(o, []() -> weft::task<int> { co_return 42; }());
  CHECK(value == 42);  // and one line on stderr says why there is no trace
}
