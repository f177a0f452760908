// weft: weft's command-line options (--mode, --workers, --switch-interval, --gil) on a CLI11 app,
// beside a program's own. Header-only and not part of <weft/weft.hpp>: include it in programs
// that use CLI11 (the library itself does not need CLI11).
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>
#include <weft/sched/run.hpp>

namespace weft {

/// Which of weft's options `add_run_options` registers (a bit set).
enum run_flags : unsigned {
  run_flag_mode = 1,             ///< `--mode=cooperative|single-lock|multi-thread`
  run_flag_workers = 2,          ///< `--workers=N` (1 to 1024; omitted: one per CPU)
  run_flag_switch_interval = 4,  ///< `--switch-interval=DURATION` (see `parse_duration`)
  run_flag_gil = 8,              ///< `--gil=interval|ticks:N`
  run_flag_all = 15,             ///< all of them
};

/// Registers weft's options on `app`, writing what they say into `options` as `app` parses
/// (`options` must outlive the parse): `--mode` (default cooperative; `processes` is refused
/// with a message naming weft::pool::process_pool), `--workers` (1 to 1024; omitted: one per CPU,
/// or what `options.workers` already holds), `--switch-interval` (a duration: "5ms", "100us", "1s";
/// a bare number is milliseconds; default 5ms) and `--gil` (`interval` or `ticks:N`). Bad values
/// are CLI::ValidationError (a CLI::ParseError) from `app.parse`. Every example uses it, so they
/// share names, defaults and units. `flags` picks a subset (a program whose
/// `--mode` also takes values of its own registers the rest). Not thread-safe (like CLI11).
inline void add_run_options(CLI::App& app, run_options& options, unsigned flags = run_flag_all) {
  if ((flags & run_flag_mode) != 0) {
    app.add_option_function<std::string>(
           "--mode",
           [&options](const std::string& name) {
             const auto m = parse_mode(name);
             if (!m) throw CLI::ValidationError("--mode", unknown_mode_message(name));
             options.mode = *m;
           },
           "executor: cooperative, single-lock or multi-thread")
        ->default_str(std::string(to_string(options.mode)));
  }
  if ((flags & run_flag_workers) != 0) {
    auto* o = app.add_option("--workers", options.workers,
                             "threads for the threaded modes, 1 to 1024 (default: one per CPU)")
                  ->check(CLI::Range(1u, 1024u));
    if (options.workers != 0) o->capture_default_str();
  }
  if ((flags & run_flag_switch_interval) != 0) {
    app.add_option_function<std::string>(
           "--switch-interval",
           [&options](const std::string& text) {
             const auto d = parse_duration(text);
             if (!d || d->count() == 0) {
               throw CLI::ValidationError("--switch-interval",
                                          "wants a positive duration such as 5ms, 100us or 1s "
                                          "(at most an hour), not '" +
                                              text + "'");
             }
             options.switch_interval = *d;
           },
           "single-lock: how long a thread waits for the lock before asking for it")
        ->default_str("5ms");
  }
  if ((flags & run_flag_gil) != 0) {
    app.add_option_function<std::string>(
           "--gil",
           [&options](const std::string& text) {
             if (!parse_gil(text, options)) {
               throw CLI::ValidationError(
                   "--gil", "wants 'interval' or 'ticks:N' (N >= 1), not '" + text + "'");
             }
           },
           "single-lock: interval (the new GIL) or ticks:N (the old GIL)")
        ->default_str("interval");
  }
}

/// Parses the command line with `app` the way every example does: nullopt when the program
/// goes on; otherwise the exit status to return from main: 0 after `--help` (the help on
/// stdout), 2 after a bad argument (one line "PROGRAM: what is wrong" and the usage on stderr).
/// Never exits the process itself. PROGRAM is `app`'s name, or argv[0]'s last component.
inline std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  std::string program = app.get_name();
  if (program.empty() && argc > 0) {
    const std::string_view path = argv[0];
    program = std::string(path.substr(path.find_last_of('/') + 1));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::printf("usage: %s [OPTIONS]\n%s", program.c_str(), app.help().c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\nusage: %s [OPTIONS]\n%s", program.c_str(), e.what(),
                 program.c_str(), app.help().c_str());
    return 2;
  }
  return std::nullopt;
}

}  // namespace weft
