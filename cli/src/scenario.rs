//! Flags and a scenario file, merged by one rule said aloud: a flag overrides the file, and
//! says so (a note on stderr and in run.log) when it replaces a value the file set; a flag
//! that contradicts the shape of the load (`-c` with stages of connections, `-d` with
//! stages) is an error naming both. Nothing is ignored silently.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use engine_blast::profiles::ProfileName;
use engine_blast::scenario::Scenario;
use engine_results::profile::Criterion;
use engine_results::thresholds::Expr;

use crate::blast_args::BlastArgs;

/// Merges `--scenario` into the flags (and checks the flags' own shape); returns the notes
/// to print.
pub fn merge(args: &mut BlastArgs) -> anyhow::Result<Vec<String>> {
    shape(args)?;
    let mut notes = Vec::new();
    if let Some(path) = args.scenario.clone() {
        let sc = Scenario::load(&path)?;
        let ctx = |field: &str| format!("scenario '{}': {field}", path.display());
        if let Some(t) = &sc.target {
            replace(&mut notes, "the URL", &mut args.url, "target", Some(t.clone()));
        }
        load(args, &sc, &ctx, &mut notes)?;
        let timeout = duration(&sc.defaults.timeout, &ctx("defaults.timeout"))?;
        replace_with(&mut notes, "--timeout", &mut args.timeout, "defaults.timeout", timeout, |d| format!("{d:?}"));
        let expect = sc.expect_status(&path.display().to_string())?;
        replace_with(&mut notes, "--expect-status", &mut args.expect_status, "defaults.expect_status", expect, |s| {
            format!("{s:?}")
        });
        let mut headers = sc.default_headers();
        headers.append(&mut args.headers);
        args.headers = headers;
        args.threshold = expressions(&mut notes, "--threshold", &args.threshold, &sc.thresholds, &ctx("thresholds"))?;
        args.abort_on = expressions(&mut notes, "--abort-on", &args.abort_on, &sc.abort_on, &ctx("abort_on"))?;
        args.criterion = criterion(&sc, &ctx)?;
        args.requests = sc.request_specs(&path.display().to_string())?;
        args.flows = sc.flow_specs(&path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        args.data = sc.data_table(base, &path.display().to_string())?.map(std::sync::Arc::new);
    }
    Ok(notes)
}

/// The load: a shape given as flags (--stages, --profile) replaces the file's; single values
/// given as flags replace the file's one by one.
fn load(
    args: &mut BlastArgs,
    sc: &Scenario,
    ctx: &dyn Fn(&str) -> String,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let l = &sc.load;
    let file_shape = match (&l.stages, &l.profile) {
        (Some(_), _) => Some("load.stages"),
        (None, Some(_)) => Some("load.profile"),
        (None, None) => None,
    };
    let flag_shape = if args.stages.is_some() { Some("--stages") } else { args.profile.map(|_| "--profile") };
    match (flag_shape, file_shape) {
        (Some(flag), Some(field)) => notes.push(format!("{flag} replaces the scenario's {field}")),
        (None, Some(field)) => file_shape_wins(args, sc, field, ctx)?,
        _ => {}
    }
    let file_duration = duration(&l.duration, &ctx("load.duration"))?;
    match flag_shape {
        // The flags' stages set connections (closed model) and length: the file's go.
        Some(flag) => {
            let closed = args.rate.is_none() && l.rate.is_none();
            match l.conns {
                Some(c) if closed => notes.push(format!("{flag} replaces the scenario's load.conns = {c}")),
                _ => replace(notes, "-c", &mut args.conns, "load.conns", l.conns),
            }
            if let Some(d) = file_duration {
                notes.push(format!("{flag} replaces the scenario's load.duration = {d:?}"));
            }
        }
        None => {
            replace(notes, "-c", &mut args.conns, "load.conns", l.conns);
            replace_with(notes, "-d", &mut args.duration, "load.duration", file_duration, |d| format!("{d:?}"));
        }
    }
    replace(notes, "--rate", &mut args.rate, "load.rate", l.rate);
    replace(notes, "--peak", &mut args.peak, "load.peak", l.peak);
    replace_with(notes, "--step", &mut args.step, "load.step", duration(&l.step, &ctx("load.step"))?, |d| {
        format!("{d:?}")
    });
    replace(notes, "--abort-grace", &mut args.abort_grace, "load.abort_grace", l.abort_grace);
    if args.profile.is_some() && args.peak.is_none() {
        bail!("a profile needs a peak: --peak N (or load.peak in the scenario)");
    }
    Ok(())
}

/// The file's stages or profile set the load; a flag that contradicts them is an error.
fn file_shape_wins(
    args: &mut BlastArgs,
    sc: &Scenario,
    field: &str,
    ctx: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    let l = &sc.load;
    let closed = args.rate.is_none() && l.rate.is_none();
    if let (Some(c), true) = (l.conns, closed) {
        bail!("{}: load.conns = {c} and {field} contradict each other: in the closed model the stages set the connections", ctx("load"));
    }
    if l.duration.is_some() {
        bail!("{}: load.duration and {field} contradict each other: the stages set the run's length", ctx("load"));
    }
    if let (Some(c), true) = (args.conns, closed) {
        bail!(
            "-c {c} contradicts the scenario's {field}: in the closed model its stages set the connections \
                     (drop -c, or replace the shape with --stages)"
        );
    }
    if let Some(d) = args.duration {
        bail!("-d {d:?} contradicts the scenario's {field}: its stages set the run's length (drop -d, or replace the shape with --stages)");
    }
    if let Some(st) = &l.stages {
        let stages =
            engine_blast::schedule::parse_stages(st).map_err(anyhow::Error::msg).with_context(|| ctx("load.stages"))?;
        args.stages = Some(stages);
    }
    if let Some(p) = &l.profile {
        args.profile = Some(ProfileName::parse(p).map_err(anyhow::Error::msg).with_context(|| ctx("load.profile"))?);
    }
    Ok(())
}

/// The flags' own shape: stages of connections set the connections and the length.
fn shape(args: &BlastArgs) -> anyhow::Result<()> {
    let shape = if args.stages.is_some() { Some("--stages") } else { args.profile.map(|_| "--profile") };
    let Some(shape) = shape else { return Ok(()) };
    if let (Some(c), None) = (args.conns, args.rate) {
        bail!("-c {c} contradicts {shape}: in the closed model the stages set the connections (drop -c, or add --rate for stages of rate)");
    }
    if let Some(d) = args.duration {
        bail!("-d {d:?} contradicts {shape}: the stages set the run's length (drop -d)");
    }
    Ok(())
}

/// The flag's value, or the file's when no flag was given; a note when a flag replaces a
/// different value of the file.
fn replace<T: PartialEq + std::fmt::Display>(
    notes: &mut Vec<String>,
    flag: &str,
    value: &mut Option<T>,
    field: &str,
    file: Option<T>,
) {
    replace_with(notes, flag, value, field, file, |v| v.to_string());
}

fn replace_with<T: PartialEq>(
    notes: &mut Vec<String>,
    flag: &str,
    value: &mut Option<T>,
    field: &str,
    file: Option<T>,
    show: impl Fn(&T) -> String,
) {
    match (value.as_ref(), file) {
        (Some(v), Some(f)) if *v != f => {
            notes.push(format!("{flag} {} replaces the scenario's {field} = {}", show(v), show(&f)))
        }
        (None, Some(f)) => *value = Some(f),
        _ => {}
    }
}

fn duration(text: &Option<String>, what: &str) -> anyhow::Result<Option<Duration>> {
    text.as_deref()
        .map(|t| engine_util::units::parse_duration(t).map_err(|e| anyhow::anyhow!("{what}: {e}")))
        .transpose()
}

/// The file's expressions and the flags': a flag replaces the file's expression on the same
/// metric and selector (a stricter file threshold can be relaxed for one run).
fn expressions(
    notes: &mut Vec<String>,
    flag: &str,
    given: &[Expr],
    file: &[String],
    what: &str,
) -> anyhow::Result<Vec<Expr>> {
    let mut out = Vec::new();
    for text in file {
        let e = Expr::parse(text).map_err(anyhow::Error::msg).with_context(|| what.to_string())?;
        match given.iter().find(|g| g.key() == e.key()) {
            Some(g) if g.text != e.text => notes.push(format!("{flag} '{g}' replaces the scenario's '{e}'")),
            Some(_) => {}
            None => out.push(e),
        }
    }
    out.extend(given.iter().cloned());
    Ok(out)
}

/// A profile level's criterion: the defaults, or the scenario's `[profile]`.
fn criterion(sc: &Scenario, ctx: &dyn Fn(&str) -> String) -> anyhow::Result<Criterion> {
    let mut c = Criterion::default();
    let p = &sc.profile;
    if let Some(d) = duration(&p.p99, &ctx("profile.p99"))? {
        c.p99_ms = d.as_secs_f64() * 1000.0;
    }
    let share = |text: &Option<String>, field: &str| -> anyhow::Result<Option<f64>> {
        text.as_deref()
            .map(|t| {
                let v = match t.trim().strip_suffix('%') {
                    Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
                    None => t.trim().parse::<f64>(),
                };
                v.ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| anyhow::anyhow!("{}: '{t}' is not a share (1%, 0.01)", ctx(field)))
            })
            .transpose()
    };
    if let Some(e) = share(&p.error_rate, "profile.error_rate")? {
        c.error_rate = e;
    }
    if let Some(a) = share(&p.achieved, "profile.achieved")? {
        c.min_rate_share = a;
    }
    Ok(c)
}
