#include <catch2/catch.hpp>

#include <weft/weft.hpp>

namespace {
weft::task<int> seven() {
  co_return 7;
}
}  // namespace

TEST_CASE("mode names round-trip", "[run]") {
  for (weft::mode m :
       {weft::mode::cooperative, weft::mode::single_lock, weft::mode::multi_thread}) {
    CHECK(weft::parse_mode(weft::to_string(m)) == m);
  }
  CHECK_FALSE(weft::parse_mode("threads").has_value());
  // Worker processes run functions in a pool, not a task: no mode, and a message saying so.
  CHECK_FALSE(weft::parse_mode("processes").has_value());
  CHECK(weft::unknown_mode_message("processes").find("weft::pool::process_pool") !=
        std::string::npos);
  CHECK(weft::unknown_mode_message("bogus") == "unknown mode 'bogus'");
  CHECK_FALSE(weft::parse_mode("").has_value());
}

TEST_CASE("mode_from_args reads --mode and --workers", "[run]") {
  const char* args[] = {"prog", "--mode=cooperative", "--workers", "3"};
  auto options = weft::mode_from_args(4, const_cast<char**>(args));
  CHECK(options.mode == weft::mode::cooperative);
  CHECK(options.workers == 3);
}

TEST_CASE("mode_from_args refuses --mode=processes, naming the process pool", "[run]") {
  const char* args[] = {"prog", "--mode=processes"};
  CHECK_THROWS_AS(weft::mode_from_args(2, const_cast<char**>(args)), weft::usage_error);
  CHECK_THROWS_WITH(weft::mode_from_args(2, const_cast<char**>(args)),
                    Catch::Contains("process pool"));
}

TEST_CASE("run refuses a value that names no mode with a clear error", "[run]") {
  weft::run_options options{static_cast<weft::mode>(7), 2};
  try {
    weft::run(options, seven());
    FAIL("run accepted an unavailable mode");
  } catch (const std::system_error& e) {
    CHECK(e.code() == weft::errc::mode_unavailable);
    CHECK(std::string(e.what()).find("names no executor mode") != std::string::npos);
  }
  CHECK(weft::run(weft::run_options{}, seven()) == 7);
  CHECK(weft::run(weft::mode::cooperative, seven()) == 7);
  CHECK(weft::run(weft::mode::single_lock, seven()) == 7);
  CHECK(weft::run(weft::mode::multi_thread, seven()) == 7);
}

TEST_CASE("errc has readable messages in its own category", "[errc]") {
  std::error_code ec = weft::errc::cancelled;
  CHECK(ec.category().name() == std::string("weft"));
  CHECK(ec.message() == "operation cancelled");
  CHECK(std::error_code(weft::errc::timed_out).message() == "operation timed out");
}
