// weft: the registry of the functions process pools run, by name and by address.
#include "registry.hpp"

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace weft::pool::detail {

namespace {

struct function_registry {
  std::mutex mutex;
  std::unordered_map<std::string, registered_function> by_name;
  std::unordered_map<std::uintptr_t, std::string> by_address;
};

function_registry& registry() {
  static function_registry instance;  // initialized on first use: safe from static initializers
  return instance;
}

}  // namespace

const registered_function* find_function(const std::string& name) {
  function_registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : &it->second;
}

bool register_process_function(const char* name, void (*fn)(), process_invoker invoke) noexcept {
  try {
    function_registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto [it, inserted] = r.by_name.try_emplace(name, registered_function{fn, invoke, false});
    if (!inserted && it->second.fn != fn) it->second.duplicate = true;
    r.by_address.emplace(reinterpret_cast<std::uintptr_t>(fn), name);
    return true;
  } catch (...) {
    return false;  // out of memory at static initialization: submit reports it as unregistered
  }
}

const std::string& process_function_name(void (*fn)()) {
  function_registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_address.find(reinterpret_cast<std::uintptr_t>(fn));
  if (it == r.by_address.end()) {
    throw std::invalid_argument(
        "weft::pool::process_pool: the function was not registered; add "
        "WEFT_PROCESS_FUNCTION(fn); at namespace scope");
  }
  if (r.by_name.at(it->second).duplicate) {
    throw std::invalid_argument("weft::pool::process_pool: two functions are registered as '" +
                                it->second + "'; give one of them another name");
  }
  return it->second;
}

}  // namespace weft::pool::detail
