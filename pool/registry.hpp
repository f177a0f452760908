// weft (private to pool/): the registry of the functions pools run, as a worker looks them up.
#pragma once

#include <string>

#include <weft/pool/process_pool.hpp>

namespace weft::pool::detail {

/// A function registered with WEFT_PROCESS_FUNCTION.
struct registered_function {
  void (*fn)() = nullptr;
  process_invoker invoke = nullptr;
  bool duplicate = false;  // two functions share this name
};

/// The function registered as `name`, or null. The entry lives as long as the process.
/// Thread-safe.
const registered_function* find_function(const std::string& name);

}  // namespace weft::pool::detail
