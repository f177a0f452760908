// The command line both Tokio references share: `--runtime current_thread|multi_thread`,
// `--only NAME` and named positive counts, each `--option value`. A bad argument prints one
// line "PROGRAM: what is wrong", the usage, and exits with status 2, like weft's own programs.

pub struct Options {
    pub runtime: String,
    pub only: String,
    counts: Vec<(&'static str, usize)>,
    program: &'static str,
    usage_line: &'static str,
}

impl Options {
    /// The value of count `name` (one of those given to `parse`).
    pub fn count(&self, name: &str) -> usize {
        self.counts.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).expect("a declared count")
    }

    /// Exits with status 2 after "PROGRAM: msg" and the usage.
    pub fn usage(&self, msg: &str) -> ! {
        eprintln!("{}: {msg}", self.program);
        eprintln!("usage: {} {}", self.program, self.usage_line);
        std::process::exit(2);
    }
}

/// Parses the process's arguments: `counts` are the options taking a positive count with their
/// defaults, `benchmarks` the names `--only` accepts.
pub fn parse(program: &'static str, usage_line: &'static str, runtime: &str,
             counts: &[(&'static str, usize)], benchmarks: &[&str]) -> Options {
    let mut o = Options { runtime: runtime.into(), only: String::new(), counts: counts.to_vec(),
                          program, usage_line };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let (name, value) = match pair {
            [name, value] => (name.as_str(), value.clone()),
            _ => o.usage("missing value"),
        };
        match name {
            "--runtime" => o.runtime = value,
            "--only" => o.only = value,
            _ => {
                let slot = match o.counts.iter().position(|(n, _)| *n == name) {
                    Some(slot) => slot,
                    None => o.usage(&format!("unknown option {name:?}")),
                };
                match value.parse::<usize>() {
                    Ok(n) if n > 0 => o.counts[slot].1 = n,
                    _ => o.usage(&format!("{name} wants a positive count, not {value:?}")),
                }
            }
        }
    }
    if !matches!(o.runtime.as_str(), "current_thread" | "multi_thread") {
        o.usage("--runtime is current_thread or multi_thread");
    }
    if !o.only.is_empty() && !benchmarks.contains(&o.only.as_str()) {
        o.usage(&format!("--only: unknown benchmark {:?}", o.only));
    }
    o
}
