// The one flag weft's fuzzers add to libFuzzer's: --write-seeds=DIR writes the fuzzer's seed
// corpus into DIR and exits. libFuzzer ignores flags that start with "--", so it passes through.
#pragma once

#include <cstdlib>
#include <string>
#include <string_view>

namespace weft::fuzzing {

/// Calls `write_seeds(DIR)` and exits with status 0 when the command line holds --write-seeds=DIR;
/// returns otherwise. For LLVMFuzzerInitialize.
template <class WriteSeeds>
void write_seeds_if_asked(int argc, char** argv, WriteSeeds write_seeds) {
  constexpr std::string_view flag = "--write-seeds=";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with(flag)) {
      write_seeds(std::string(arg.substr(flag.size())));
      std::exit(0);
    }
  }
}

}  // namespace weft::fuzzing
