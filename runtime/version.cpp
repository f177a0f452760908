#include <weft/version.hpp>

namespace weft {

// Compiled into the library, so it reports the library's version even when a program was
// built against other headers.
std::string_view version() noexcept {
  return WEFT_VERSION_STRING;
}

}  // namespace weft
