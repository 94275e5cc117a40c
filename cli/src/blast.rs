//! `engine blast`: flags → plan → run → summary.

use std::io::Write;

use anyhow::Context as _;
use engine_blast::live::{self, Live, LiveFeed, LiveObserver};
use engine_blast::metrics::BlastMetrics;
use engine_blast::{Control, RunError};
use engine_results::folder::{self, RunLog};
use engine_results::hlog::{self, HlogObserver};

use crate::blast_args::BlastArgs;
use crate::exit;
use crate::output::Progress;

pub fn main(args: BlastArgs) -> u8 {
    let mut flags = engine_blast::Flags::from(&args);
    let planned = flags.overlay().map_err(anyhow::Error::from).and_then(|notes| {
        let mut input = flags.input()?;
        input.tls = args.tls.options();
        let plan = input.build()?;
        let judges = flags.judges().check(&plan)?;
        Ok((plan, judges, notes))
    });
    let (plan, judges, notes) = match planned {
        Ok(p) => p,
        // A name that does not resolve is a target that cannot be reached, not a usage error.
        Err(e) if matches!(e.downcast_ref(), Some(engine_blast::plan::PlanError::Resolve { .. })) => {
            return crate::fail(exit::UNREACHABLE, &e)
        }
        Err(e) => return crate::fail(exit::USAGE, &e),
    };
    for n in &notes {
        eprintln!("engine: note: {n}");
    }
    if args.print_plan {
        print!("{}", engine_blast::describe::plan_text(&plan, &flags));
        return exit::OK;
    }
    for w in engine_runtime::limits::host_warnings(plan.conns, plan.source_ips.len() as u64) {
        eprintln!("engine: note: {w}");
    }
    let mut outputs = match Outputs::open(&args, &plan, &flags.out_vars()) {
        Ok(o) => o,
        Err(e) => return crate::fail(exit::USAGE, &e),
    };
    for n in &notes {
        outputs.run_log.line(&format!("note: {n}"));
    }
    let control = Control::new();
    crate::signals::stop_run(&control, "the run");
    if let Err(e) = outputs.serve_live(&args, &plan, &control, judges.judges().thresholds.clone()) {
        outputs.discard();
        return crate::fail(exit::USAGE, &e);
    }
    let summary = match run(&args, &plan, judges, &control, &mut outputs) {
        Ok(s) => s,
        Err(e @ (RunError::Unreachable { .. } | RunError::Handshake { .. })) => {
            // Nothing ran: a folder with only run.log would be a run that `engine report`
            // cannot read. The one line on stderr says why.
            outputs.discard();
            return crate::fail(exit::UNREACHABLE, &e.into());
        }
        Err(e @ RunError::Prometheus { .. }) => {
            outputs.discard();
            return crate::fail(exit::USAGE, &e.into());
        }
        Err(e) => return crate::fail(exit::FAILURE, &e.into()),
    };
    if let Err(e) = outputs.finish(&summary) {
        return crate::fail(exit::FAILURE, &e);
    }
    crate::verdict(&summary)
}

/// Runs the plan, judged, and watched by the progress line, the results folder's run.log and
/// latency.hlog, and the metrics.
fn run(
    args: &BlastArgs,
    plan: &engine_blast::Plan,
    judges: engine_blast::Checked,
    control: &Control,
    outputs: &mut Outputs,
) -> Result<engine_blast::Summary, RunError> {
    let banner = engine_blast::describe::banner(plan);
    eprintln!("{banner}");
    outputs.run_log.line(&format!("command: {}", outputs.command));
    outputs.run_log.line(&format!("plan: {banner}"));
    let pre = engine_blast::preflight(plan)?;
    if let (Some(t), Some(n)) = (&plan.tls, pre.tls) {
        let line = format!("TLS: {} {}, {}", n.version, n.cipher, t.verify);
        eprintln!("{line}");
        outputs.run_log.line(&line);
    }
    let mut progress = Progress::new(args.quiet, plan);
    let names = plan.latency_names();
    let mut hlog = HlogObserver::new(hlog::Writer::new(outputs.dir.join("latency.hlog"), names));
    let mut run = engine_blast::Run::new(plan, judges).watch(&mut progress).watch(&mut hlog);
    if let Some(m) = outputs.metrics.as_mut() {
        run = run.watch(m);
    }
    if let Some(live) = outputs.live.as_mut() {
        run = run.watch(live);
    }
    let run = run.watch(&mut outputs.run_log).start(&pre, control);
    if let Err(e) = &run {
        outputs.run_log.line(&format!("failed: {e}"));
    }
    run
}

/// Where a blast's results go: the terminal, the summary JSON (a file opened before the run,
/// so a path that cannot be written is refused before anything is sent), the results folder,
/// the metrics endpoint and the Pushgateway.
struct Outputs {
    dir: std::path::PathBuf,
    /// The folder did not exist before this run made it.
    made_dir: bool,
    run_log: RunLog,
    command: String,
    started: std::time::SystemTime,
    json: Json,
    metrics: Option<BlastMetrics>,
    _metrics_server: Option<engine_blast::metrics::MetricsServer>,
    push: Option<engine_blast::push::Pushgateway>,
    /// The live page's feed, and the endpoint of the page and the control API.
    live: Option<LiveObserver>,
    _live_server: Option<engine_runtime::endpoint::Endpoint>,
}

/// Where the summary JSON goes.
enum Json {
    None,
    Stdout,
    File(std::path::PathBuf, std::fs::File),
}

impl Outputs {
    fn open(args: &BlastArgs, plan: &engine_blast::Plan, vars: &[(&str, String)]) -> anyhow::Result<Outputs> {
        let push = args.push.as_deref().map(engine_blast::push::Pushgateway::parse).transpose()?;
        let mut metrics = (args.metrics_addr.is_some() || push.is_some()).then(|| BlastMetrics::new(plan));
        let metrics_server = match (args.metrics_addr, metrics.as_mut()) {
            (Some(addr), Some(m)) => {
                let server = engine_blast::metrics::serve(addr, m.handle())
                    .map_err(|e| anyhow::anyhow!("--metrics-addr {addr}: {e}"))?;
                eprintln!("metrics: http://{}/metrics", server.local_addr());
                Some(server)
            }
            _ => None,
        };
        let json = match args.json.as_deref() {
            None => Json::None,
            Some(p) if p.as_os_str() == "-" => Json::Stdout,
            Some(p) => match std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(p) {
                Ok(f) => Json::File(p.to_path_buf(), f),
                Err(e) => anyhow::bail!("cannot write the summary JSON to '{}': {e}", p.display()),
            },
        };
        let out = args.out.as_deref().map(|o| folder::expand(o, vars, std::time::SystemTime::now())).transpose()?;
        let made_dir = out.as_deref().is_none_or(|d| !d.exists());
        let dir = folder::create(out.as_deref(), "")?;
        let stage_targets =
            plan.single().map_or(Vec::new(), |p| p.model.profile().stages().iter().map(|s| s.target).collect());
        let run_log = RunLog::create(&dir)?.with_stages(stage_targets);
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        let started = std::time::SystemTime::now();
        Ok(Outputs {
            dir,
            made_dir,
            run_log,
            command,
            started,
            json,
            metrics,
            _metrics_server: metrics_server,
            push,
            live: None,
            _live_server: None,
        })
    }

    /// The live page and the control API (`--dashboard`, `--control`), steering `control`.
    fn serve_live(
        &mut self,
        args: &BlastArgs,
        plan: &engine_blast::Plan,
        control: &Control,
        thresholds: Vec<engine_results::thresholds::Expr>,
    ) -> anyhow::Result<()> {
        let token = args.control_token.clone();
        let Some(addr) = live::address(args.dashboard, args.control, token.as_deref())? else { return Ok(()) };
        let feed = args.dashboard.is_some().then(LiveFeed::new);
        let server = live::serve(addr, Live { control: control.clone(), token, feed: feed.clone() })
            .map_err(|e| anyhow::anyhow!("--{} {addr}: {e}", if feed.is_some() { "dashboard" } else { "control" }))?;
        let at = server.local_addr();
        let line = match feed.is_some() {
            true => format!("dashboard: http://{at}/ (control API: http://{at}/run)"),
            false => format!("control API: http://{at}/run"),
        };
        eprintln!("{line}");
        self.run_log.line(&line);
        self.live = feed.map(|f| LiveObserver::new(f, plan, control, thresholds));
        self._live_server = Some(server);
        Ok(())
    }

    /// Removes what was made for a run that never started: run.log, and the folder if this
    /// run made it (and nothing else is in it).
    fn discard(&self) {
        let _ = std::fs::remove_file(self.dir.join("run.log"));
        if self.made_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// Prints the summary and writes it everywhere. A summary JSON that cannot be written
    /// fails the run, but only after the results folder.
    fn finish(&mut self, summary: &engine_blast::Summary) -> anyhow::Result<()> {
        let text = engine_results::render::text(summary);
        if matches!(self.json, Json::Stdout) {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
        let json_error = match &self.json {
            Json::File(path, file) => {
                // set_len fails on a pipe or a device, where there is nothing to truncate.
                let _ = file.set_len(0);
                write_json(file, summary)
                    .with_context(|| format!("cannot write the summary JSON to '{}'", path.display()))
                    .err()
            }
            Json::Stdout => {
                write_json(std::io::stdout(), summary).context("cannot write the summary JSON to stdout").err()
            }
            Json::None => None,
        };
        folder::write_summary(&self.dir, summary, &self.command, self.started)?;
        if let (Some(target), Some(m)) = (&self.push, &self.metrics) {
            match target.push(&m.render()) {
                Ok(()) => self.run_log.line(&format!("pushed metrics to {}{}", target.hostport, target.path)),
                Err(e) => {
                    eprintln!("engine: warning: --push failed: {e:#}");
                    self.run_log.line(&format!("push failed: {e:#}"));
                }
            }
        }
        eprintln!("results: {}", self.dir.display());
        json_error.map_or(Ok(()), Err)
    }
}

fn write_json(mut out: impl Write, summary: &engine_blast::Summary) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(summary)? + "\n";
    out.write_all(text.as_bytes())?;
    Ok(())
}
