//! `engine report live`: several running blasts (their `--dashboard` pages) followed as one
//! run: merged exactly each second as `engine report merge` merges results folders, shown on a
//! page of its own, and written as one results folder when every blast has ended.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use engine_blast::follow::{Follower, Source};
use engine_results::merge::{self, Input, Merged};
use engine_runtime::endpoint::{Endpoint, Reply};

use crate::exit;

#[derive(Args, Debug)]
#[command(
    about = "Follow several running blasts as one run, merged exactly, live",
    long_about = "Follow several running blasts (each run with --dashboard, typically the workers of one plan: \
        --worker-index I --worker-count N --start-at T) through their live pages' events, merge them each second \
        exactly as `engine report merge` merges results folders (latency histograms added, counts summed, time \
        series aligned on wall-clock seconds), print the merged rate and latency, serve the merged page with \
        --dashboard, and when every blast has ended write the merged results folder. Start it before the blasts' \
        first hour is over (a page keeps the last hour of frames). Exit 4 when a threshold fails.",
    after_help = "Example:\n  engine report live http://10.0.0.5:5665 http://10.0.0.6:5665 --dashboard --out results/fleet"
)]
pub struct LiveArgs {
    /// The blasts' live pages: http://HOST:PORT
    #[arg(required = true, num_args = 1..)]
    urls: Vec<String>,
    /// The merged results folder at the end (default: `results/<timestamp>-merged/`)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Serve the merged run's page at http://ADDR/ (--dashboard alone: 127.0.0.1:5675)
    #[arg(long, value_name = "ADDR", num_args = 0..=1, require_equals = true, default_missing_value = "127.0.0.1:5675")]
    dashboard: Option<SocketAddr>,
    /// Bearer token the blasts' pages want (their --control-token)
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Merge runs that are not workers of one run; refused without it
    #[arg(long)]
    force: bool,
    /// No progress lines
    #[arg(short, long)]
    quiet: bool,
}

/// How often the merge is redone and the progress line printed.
const EVERY: Duration = Duration::from_secs(1);

pub fn main(args: LiveArgs) -> u8 {
    match run(&args) {
        Ok(code) => code,
        Err(e) => crate::fail(exit::USAGE, &e),
    }
}

fn run(args: &LiveArgs) -> anyhow::Result<u8> {
    let page = args.dashboard.map(engine_blast::follow::page_address).transpose()?;
    let follower = Follower::start(&args.urls, args.token.as_deref())?;
    let shown = Arc::new(Mutex::new(String::new()));
    let _server = match page {
        Some(addr) => Some(serve(addr, shown.clone())?),
        None => None,
    };
    let started = Instant::now();
    let paths: Vec<PathBuf> = args.urls.iter().map(PathBuf::from).collect();
    loop {
        std::thread::sleep(EVERY);
        let sources = follower.sources();
        if let Some((url, e)) = sources.iter().find_map(|s| s.error.as_ref().map(|e| (&s.url, e))) {
            anyhow::bail!("{url}: {e}");
        }
        let ended = sources.iter().all(|s| s.ended);
        let Some(inputs) = inputs(&sources)? else {
            if !args.quiet {
                eprintln!("[{:5.1}s] waiting for every blast's first second", started.elapsed().as_secs_f64());
            }
            continue;
        };
        let merged = match merge::merge(&paths, &inputs, &[], args.force) {
            Ok(m) => m,
            // The last word is the final merge's; before it, a mismatch may be a moment's.
            Err(e) if !ended => {
                if !args.quiet {
                    eprintln!("[{:5.1}s] not merged yet: {e}", started.elapsed().as_secs_f64());
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        *shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = serde_json::to_string(&merged.summary)?;
        if ended {
            return finish(args, &merged, &inputs);
        }
        if !args.quiet {
            progress(&merged, sources.len());
        }
    }
}

/// Every blast's summary and log so far, once each has sent its first second.
fn inputs(sources: &[Source]) -> anyhow::Result<Option<Vec<Input>>> {
    let mut out = Vec::with_capacity(sources.len());
    for s in sources {
        let Some(summary) = &s.summary else { return Ok(None) };
        let summary = serde_json::from_value(summary.clone())
            .with_context(|| format!("{}: a summary this engine cannot read", s.url))?;
        let log = engine_results::hlog::parse(s.hlog.as_bytes(), Path::new(&s.url))?;
        out.push(Input { name: s.url.clone(), log, summary: Some(summary) });
    }
    Ok(Some(out))
}

fn progress(m: &Merged, blasts: usize) {
    let Some(p) = m.summary.timeseries.last() else { return };
    eprintln!(
        "[{:5.1}s] {:9.0} req/s  p50 {:.2}ms  p99 {:.2}ms  errors {}  ({blasts} blasts; whole run so far: p99 {:.2}ms)",
        p.t_s, p.rps, p.p50_ms, p.p99_ms, m.summary.errors.total, m.summary.latency_ms.p99
    );
}

fn finish(args: &LiveArgs, merged: &Merged, inputs: &[Input]) -> anyhow::Result<u8> {
    let out = engine_results::folder::create(args.out.as_deref(), "-merged")?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    merged.write(&out, &command, inputs)?;
    print!("{}", engine_results::render::text(&merged.summary));
    eprintln!("results: {}", out.display());
    Ok(crate::verdict(&merged.summary))
}

/// The merged page: report.html's, drawn from the merged summary so far, reloaded each second.
fn serve(addr: SocketAddr, shown: Arc<Mutex<String>>) -> anyhow::Result<Endpoint> {
    let refuse = |status, message: &str| Reply::new(status, "text/plain", format!("{message}\n"));
    let endpoint = Endpoint::serve("report-live", addr, 0, refuse, move |req| match (req.method, req.path) {
        ("GET", "/") => {
            let summary = shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let top = r#"<meta http-equiv="refresh" content="1"><p>merged, live: this page reloads each second</p>"#;
            Reply::new(200, "text/html; charset=utf-8", engine_results::html::page(&summary, top, ""))
        }
        ("GET", "/summary.json") => {
            Reply::new(200, "application/json", shown.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
        }
        _ => Reply::new(404, "text/plain", "see / and /summary.json\n"),
    })
    .map_err(|e| anyhow::anyhow!("--dashboard {addr}: {e}"))?;
    eprintln!("dashboard: http://{}/", endpoint.local_addr());
    Ok(endpoint)
}
