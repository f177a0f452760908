#include <catch2/catch.hpp>

#include <weft/weft.hpp>

namespace {
weft::task<int> seven() {
  co_return 7;
}
}  // namespace

TEST_CASE("mode names round-trip", "[run]") {
  for (weft::mode m : {weft::mode::cooperative, weft::mode::single_lock, weft::mode::multi_thread,
                       weft::mode::processes}) {
    CHECK(weft::parse_mode(weft::to_string(m)) == m);
  }
  CHECK_FALSE(weft::parse_mode("threads").has_value());
  CHECK_FALSE(weft::parse_mode("").has_value());
}

TEST_CASE("mode_from_args reads --mode and --workers", "[run]") {
  const char* args[] = {"prog", "--mode=cooperative", "--workers", "3"};
  auto options = weft::mode_from_args(4, const_cast<char**>(args));
  CHECK(options.mode == weft::mode::cooperative);
  CHECK(options.workers == 3);
}

TEST_CASE("run refuses a mode this build lacks with a clear error", "[run]") {
  // Processes run registered functions in a pool (io::process_pool), not a task.
  weft::run_options options{weft::mode::processes, 2};
  try {
    weft::run(options, seven());
    FAIL("run accepted an unavailable mode");
  } catch (const std::system_error& e) {
    CHECK(e.code() == weft::errc::mode_unavailable);
    CHECK(std::string(e.what()).find("processes") != std::string::npos);
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
