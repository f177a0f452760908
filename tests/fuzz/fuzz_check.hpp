// weft fuzzing: the check shared by the harnesses. libFuzzer treats an abort as a crash and saves
// the input, so a broken invariant is reported like a sanitizer error (file, line, condition).
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
