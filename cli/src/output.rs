//! Terminal output: the banner, the per-interval progress line and the summary.

use std::io::{IsTerminal, Write};

use engine_blast::{Plan, Summary};
use engine_results::observe::{Flow, Interval, Observer};
pub use engine_results::render::ms;

/// One line per interval on stderr: rewritten in place on a terminal, plain lines otherwise.
pub struct Progress {
    quiet: bool,
    tty: bool,
    drawn: bool,
    /// Stages of the plan, when it has several.
    stages: usize,
    /// The generator was saturated in an earlier interval: said once, on its own line.
    warned: bool,
    /// Arrival-rate flows: iterations started are shown beside requests.
    iterations: bool,
    /// The plan's level is one figure (connections or a rate), not scenarios of both models.
    target: bool,
}

impl Progress {
    pub fn new(quiet: bool, plan: &Plan) -> Self {
        let stages = plan.single().map_or(1, |p| p.model.profile().stages().len());
        let iterations = plan.parts.iter().any(|p| p.arrival_flows());
        let open = |p: &engine_blast::plan::Part| p.model.name() == "open";
        let target = plan.parts.iter().all(open) || !plan.parts.iter().any(open);
        Self { quiet, tty: std::io::stderr().is_terminal(), drawn: false, stages, warned: false, iterations, target }
    }

    fn update(&mut self, i: &Interval<'_>) {
        if self.quiet {
            return;
        }
        let p = i.point;
        let stage = if self.stages > 1 {
            format!("  stage {}/{}", i.stage.min(self.stages), self.stages)
        } else {
            String::new()
        };
        let latency = if p.requests == 0 {
            "no response".to_string()
        } else {
            format!("p50 {}  p99 {}", ms(p.p50_ms), ms(p.p99_ms))
        };
        let iterations = match i.totals.iterations.as_deref() {
            Some(it) if self.iterations => format!("  {:.0} iterations/s", it.started as f64 / i.seconds()),
            _ => String::new(),
        };
        let line = format!(
            "[{:>5.1}s/{:.0}s] {:>10.0} req/s{iterations}  {latency}  errors {}  open {}{}{stage}",
            i.elapsed_s,
            i.planned_s,
            p.rps,
            p.errors,
            p.open,
            if self.target { format!("  target {}", p.target) } else { String::new() }
        );
        let mut err = std::io::stderr().lock();
        let busiest = i.busy.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
        if let Some((shard, &busy)) = busiest.filter(|(_, &b)| b > engine_results::summary::SATURATED && !self.warned) {
            self.warned = true;
            let _ = write!(err, "{}", if self.drawn { "\r\x1b[2K" } else { "" });
            let _ = writeln!(
                err,
                "engine: warning: shard {shard} was on the CPU or waiting for it {:.0}% of the last second: the generator is saturated, \
                 and latency includes its own queueing (add shards or hosts)",
                busy * 100.0
            );
        }
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

impl Observer for Progress {
    fn interval(&mut self, i: &Interval<'_>) -> Flow {
        self.update(i);
        Flow::Continue
    }

    fn finish(&mut self, _: &mut Summary) {
        Progress::finish(self);
    }
}
