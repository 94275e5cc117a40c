//! `engine`: the HTTP load generator and sidecar proxy. This binary parses flags, prints and
//! exits; the work happens in the libraries under `crates/` (docs/architecture.md).

mod blast;
mod blast_args;
mod demo;
mod fatal;
mod live;
mod merge;
mod output;
mod proxy;
mod report;
mod signals;
mod target;
mod tls_args;
mod windows;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes of the contract in DESIGN.md; a run's own are its verdict's.
pub mod exit {
    use engine_results::summary::Verdict;

    pub const OK: u8 = Verdict::Passed.exit_code();
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = Verdict::NoResponse.exit_code();
    pub const THRESHOLD: u8 = Verdict::ThresholdFailed.exit_code();
    pub const SAFETY_STOP: u8 = Verdict::SafetyStop.exit_code();
    pub const INTERRUPTED: u8 = Verdict::Interrupted.exit_code();
    /// A thread panicked (a bug); never the answer to bad input.
    pub const PANIC: u8 = 101;
}

#[derive(Parser)]
#[command(name = "engine", version, about = "HTTP/1.1 load generator and sidecar proxy for capacity engineers", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Blast(Box<blast_args::BlastArgs>),
    Proxy(Box<proxy::ProxyArgs>),
    Target(target::TargetArgs),
    Demo(demo::DemoArgs),
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    fatal::install();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(usage_error(e)),
    };
    if !matches!(cli.command, Command::Report(_)) {
        if let Err(e) = engine_runtime::probe::io_uring() {
            return ExitCode::from(fail(exit::USAGE, &e.into()));
        }
    }
    let code = match cli.command {
        Command::Blast(args) => blast::main(*args),
        Command::Proxy(args) => proxy::main(*args),
        Command::Target(args) => target::main(args),
        Command::Demo(args) => demo::main(args),
        Command::Report(args) => report::main(args),
    };
    ExitCode::from(code)
}

/// Help and version go to stdout (exit 0); any other parse error is one line on stderr,
/// exit 2: clap's own text without its blank lines and usage block.
fn usage_error(e: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { exit::USAGE } else { exit::OK };
    }
    let text = e.render().to_string();
    let text = text.split("\n\nUsage:").next().unwrap_or("");
    let text = text.split("\n\nFor more information").next().unwrap_or("");
    let line: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = line.join(" ");
    eprintln!("engine: {} (see --help)", line.strip_prefix("error: ").unwrap_or(&line));
    exit::USAGE
}

/// The exit code of a run that ended with `summary`: `engine blast`, `engine demo` and
/// `engine report merge` all leave through here (a panic on the way is exit 101).
pub fn verdict(summary: &engine_results::Summary) -> u8 {
    fatal::or_panic(summary.verdict().exit_code())
}

/// Prints one error line (with its causes) and returns the exit code.
pub fn fail(code: u8, err: &anyhow::Error) -> u8 {
    eprintln!("engine: {err:#}");
    code
}

#[cfg(test)]
mod tests {
    use engine_results::stats::Totals;
    use engine_results::summary::{Fired, Threshold};
    use engine_results::Summary;

    use super::exit;

    fn answered() -> Summary {
        let mut s = Summary::new("http://127.0.0.1:1/", 1, 1, &Totals::default(), 1.0);
        s.requests = 10;
        s
    }

    /// Blast, demo and merge exit by `verdict`; each kind of ending gets its contract's code,
    /// the most serious first.
    #[test]
    fn every_ending_has_its_exit_code() {
        let failed = Threshold { expr: "p99<1ms".into(), pass: false, value: 2.0, no_data: false };
        let fired = Fired { expr: "error_rate>1%".into(), at_s: 1.0, value: 0.5 };
        let mut cases = vec![(answered(), exit::OK)];
        let mut s = answered();
        s.thresholds.push(failed.clone());
        cases.push((s.clone(), exit::THRESHOLD));
        s.requests = 0;
        cases.push((s.clone(), exit::UNREACHABLE));
        s.stopped_by = Some(fired);
        cases.push((s.clone(), exit::SAFETY_STOP));
        s.interrupted = true;
        cases.push((s, exit::INTERRUPTED));
        for (summary, code) in cases {
            assert_eq!(super::verdict(&summary), code, "{:?}", summary.verdict());
        }
    }
}
