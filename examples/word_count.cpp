// Word count over a directory, map in worker processes, reduce in the parent: the seed's
// multiprocessing.Pool.map example, on weft::pool::process_pool.
//
//   ./word_count DIR [--workers=N] [--top=10] [--start-method=spawn|fork]
//
// Every regular file directly in DIR is one job: a worker reads it and counts its words
// (letters and digits, lower-cased), sending back the words and their counts. The parent waits
// on the cooperative executor while the workers run in parallel, then merges the counts and
// prints the totals and the most frequent words. A file a worker cannot read is reported and
// skipped; the last line is machine-readable: files=F words=W distinct=D skipped=S.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <weft/cli.hpp>
#include <weft/weft.hpp>

namespace {

// What a worker sends back for one file: an error ("" when none), the words, their counts.
using file_counts = std::tuple<std::string, std::vector<std::string>, std::vector<std::uint64_t>>;

// Runs in a worker process.
file_counts count_file(std::string path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {"cannot open " + path, {}, {}};
  std::unordered_map<std::string, std::uint64_t> counts;
  std::string word;
  char c;
  while (in.get(c)) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0) {
      word.push_back(static_cast<char>(std::tolower(u)));
    } else if (!word.empty()) {
      ++counts[word];
      word.clear();
    }
  }
  if (!word.empty()) ++counts[word];
  if (in.bad()) return {"cannot read " + path, {}, {}};
  file_counts out;
  for (auto& [w, n] : counts) {
    std::get<1>(out).push_back(w);
    std::get<2>(out).push_back(n);
  }
  return out;
}
WEFT_PROCESS_FUNCTION(count_file);

struct totals {
  std::map<std::string, std::uint64_t> words;  // ordered, so ties print alphabetically
  std::uint64_t all_words = 0;
  unsigned skipped = 0;
};

weft::task<totals> count_all(weft::pool::process_pool& pool, std::vector<std::string> files) {
  // map: one job per file, as many at once as there are workers, results in file order.
  std::vector<file_counts> parts = co_await pool.map(count_file, files);
  totals t;
  for (auto& [error, words, counts] : parts) {
    if (!error.empty()) {
      fmt::print(stderr, "word_count: {} (skipped)\n", error);
      ++t.skipped;
      continue;
    }
    for (std::size_t i = 0; i < words.size(); ++i) {
      t.words[words[i]] += counts[i];
      t.all_words += counts[i];
    }
  }
  co_await pool.shutdown();
  co_return t;
}

}  // namespace

int main(int argc, char** argv) {
  // The pool's workers are this program, re-executed (start method spawn).
  weft::pool::serve_if_pool_worker();
  CLI::App app{"Counts the words of the files in a directory with a process pool"};
  std::string directory;
  weft::run_options options;  // only --workers: the pool's worker processes (the rest runs
  options.workers = 2;        // on the cooperative executor)
  unsigned top = 10;
  std::string start_method = "spawn";
  app.add_option("directory", directory, "the directory whose files are counted")->required();
  weft::add_run_options(app, options, weft::run_flag_workers);
  app.add_option("--top", top, "how many of the most frequent words to print")
      ->capture_default_str();
  app.add_option("--start-method", start_method, "spawn (re-exec) or fork")->capture_default_str();
  if (auto status = weft::parse_command_line(app, argc, argv)) return *status;
  const unsigned workers = options.workers;
  if (workers > 256) {
    fmt::print(stderr, "word_count: --workers wants 1 to 256, not {}\n", workers);
    return 2;
  }
  if (start_method != "spawn" && start_method != "fork") {
    fmt::print(stderr, "word_count: --start-method wants spawn or fork, not '{}'\n", start_method);
    return 2;
  }

  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(directory, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::error_code kind_error;
    if (it->is_regular_file(kind_error)) files.push_back(it->path().string());
  }
  if (ec) {
    fmt::print(stderr, "word_count: cannot list {}: {}\n", directory, ec.message());
    return 2;
  }
  std::sort(files.begin(), files.end());

  try {
    weft::pool::process_pool pool(workers, start_method == "fork"
                                               ? weft::pool::start_method::fork
                                               : weft::pool::start_method::spawn);
    const totals t = weft::run(count_all(pool, files));
    std::vector<std::pair<std::string, std::uint64_t>> ranked(t.words.begin(), t.words.end());
    std::stable_sort(ranked.begin(), ranked.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    if (ranked.size() > top) ranked.resize(top);
    for (const auto& [word, n] : ranked) fmt::print("{:>10} {}\n", n, word);
    fmt::print("files={} words={} distinct={} skipped={}\n", files.size(), t.all_words,
               t.words.size(), t.skipped);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "word_count: {}\n", e.what());
    return 1;
  }
}
