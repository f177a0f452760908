#include <weft/errc.hpp>

#include <cstdio>
#include <exception>

#include <weft/task.hpp>

namespace weft {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "weft"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::cancelled: return "operation cancelled";
      case errc::timed_out: return "operation timed out";
      case errc::mode_unavailable: return "executor mode not available in this build";
      case errc::no_runtime: return "no weft runtime is running on this thread";
      case errc::already_joined: return "join_handle already awaited";
      case errc::end_of_stream: return "end of stream before the expected bytes";
      case errc::channel_closed: return "channel closed";
      case errc::worker_died: return "process pool worker died";
      case errc::job_failed: return "process pool job failed";
      case errc::pool_closed: return "process pool is shut down";
      case errc::fork_unsafe: return "fork is unsafe once threads or io_uring rings exist";
    }
    return "unknown weft error";
  }
};

}  // namespace

const std::error_category& weft_category() noexcept {
  static const category instance;
  return instance;
}

void throw_error(errc e) {
  throw std::system_error(make_error_code(e));
}

void throw_error(errc e, const std::string& what) {
  throw std::system_error(make_error_code(e), what);
}

}  // namespace weft

namespace weft::detail {

void report_unobserved(const std::exception_ptr& error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const std::system_error& e) {
    if (e.code() == errc::cancelled) return;
    std::fprintf(stderr, "weft: a detached task ended with an exception nobody joined: %s\n",
                 e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "weft: a detached task ended with an exception nobody joined: %s\n",
                 e.what());
  } catch (...) {
    std::fputs(
        "weft: a detached task ended with an exception nobody joined (not a std::exception)\n",
        stderr);
  }
}

}  // namespace weft::detail
