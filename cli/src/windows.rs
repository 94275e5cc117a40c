//! `engine report windows`: flags, then `engine_results::windows`, then print.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

#[derive(Args, Debug)]
#[command(
    about = "A run's corrected latency per window (CSV), exact from its latency.hlog",
    long_about = "Print a run's latency (corrected for coordinated omission) per window of --every as CSV: \
        window start and end in seconds from the first interval, responses, p50, p90, p99, p99.9 and max in \
        milliseconds. Each window's histogram is the sum of its intervals' histograms, so the percentiles are \
        exact. A window without responses has empty percentiles.",
    after_help = "Example:\n  engine report windows results/20261128-090000 --every 1m"
)]
pub struct WindowsArgs {
    /// A results folder, or a latency .hlog file
    run: PathBuf,
    /// Window length: 10s, 1m, 1h
    #[arg(long, default_value = "1m", value_name = "DUR", value_parser = engine_util::units::parse_duration)]
    every: Duration,
}

pub fn print(args: &WindowsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if args.every < Duration::from_millis(1) {
        anyhow::bail!("--every must be at least 1ms");
    }
    let path = if args.run.is_dir() { args.run.join("latency.hlog") } else { args.run.clone() };
    let log = engine_results::hlog::read(&path)?;
    let windows = engine_results::windows::windows(&log, args.every);
    if windows.is_empty() {
        anyhow::bail!("'{}' holds no intervals (the run never started)", path.display());
    }
    out.write_all(engine_results::windows::csv(&windows).as_bytes())?;
    Ok(())
}
