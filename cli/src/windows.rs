//! `engine report windows`: a run's latency in windows of a fixed length (a minute of a soak,
//! say), exact from its latency.hlog: the intervals of each window are added, never their
//! percentiles averaged.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use engine_results::stats::new_histogram;

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
    #[arg(long, default_value = "1m", value_name = "DUR", value_parser = engine_runtime::units::parse_duration)]
    every: Duration,
}

pub fn print(args: &WindowsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if args.every < Duration::from_millis(1) {
        anyhow::bail!("--every must be at least 1ms");
    }
    let path = if args.run.is_dir() { args.run.join("latency.hlog") } else { args.run.clone() };
    let log = crate::merge::read_hlog(&path)?;
    let Some(t0) = log.intervals.first().map(|i| i.start) else {
        anyhow::bail!("'{}' holds no intervals (the run never started)", path.display());
    };
    let every = args.every.as_secs_f64();
    writeln!(out, "start_s,end_s,responses,p50_ms,p90_ms,p99_ms,p999_ms,max_ms")?;
    let mut window = 0u64;
    let mut hist = new_histogram();
    let flush = |window: u64, hist: &mut hdrhistogram::Histogram<u64>, out: &mut dyn Write| -> anyhow::Result<()> {
        let ms = |q: f64| format!("{:.3}", hist.value_at_quantile(q) as f64 / 1e3);
        let figures = if hist.is_empty() {
            ",,,,".to_string()
        } else {
            format!("{},{},{},{},{:.3}", ms(0.5), ms(0.9), ms(0.99), ms(0.999), hist.max() as f64 / 1e3)
        };
        let (start, end) = (window as f64 * every, (window + 1) as f64 * every);
        writeln!(out, "{start:.3},{end:.3},{},{figures}", hist.len())?;
        hist.reset();
        Ok(())
    };
    for i in &log.intervals {
        // An interval belongs to the window its end falls in.
        let at = ((i.start + i.len - t0 - 1e-6).max(0.0) / every).floor() as u64;
        while window < at {
            flush(window, &mut hist, out)?;
            window += 1;
        }
        hist.add(&i.corrected).context("a histogram of the log is out of range")?;
    }
    flush(window, &mut hist, out)
}
