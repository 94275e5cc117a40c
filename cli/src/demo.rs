//! `engine demo`: the built-in target and a blast against it, in one command.

use std::time::Duration;

use clap::Args;
use engine_core::target::{Target, TargetConfig};
use engine_core::{Control, PlanInput};

use crate::exit;
use crate::output;

#[derive(Args, Debug)]
#[command(
    about = "Start the built-in target on a free loopback port and blast it",
    long_about = "Start the built-in target on a free loopback port, blast it for a few seconds, and print \
        the summary next to the number of responses the target itself served: a first look at every part \
        working, with nothing to install or configure."
)]
pub struct DemoArgs {
    /// Connections of the blast
    #[arg(short, long, default_value_t = 64)]
    pub conns: u64,
    /// How long to blast
    #[arg(short, long, default_value = "3s", value_parser = engine_core::units::parse_duration)]
    pub duration: Duration,
}

pub fn main(args: DemoArgs) -> u8 {
    let cpus = match engine_core::affinity::allowed_cpus() {
        Ok(c) => c,
        Err(e) => return crate::fail(exit::FAILURE, &anyhow::anyhow!("cannot read CPU affinity: {e}")),
    };
    // Target on the first CPU, blast on the others (or the same one on a single-CPU box).
    let target_cpu = cpus[0];
    let blast_cpus: Vec<usize> = if cpus.len() > 1 { cpus[1..].to_vec() } else { cpus.clone() };
    let cfg = TargetConfig {
        listen: "127.0.0.1:0".parse().expect("literal address"),
        body_size: 2,
        delay: Duration::ZERO,
        shard_cpus: vec![target_cpu],
    };
    let target = match Target::start(cfg) {
        Ok(t) => t,
        Err(e) => return crate::fail(exit::FAILURE, &e.into()),
    };
    println!("engine demo: target on http://{}/ (CPU {target_cpu})", target.local_addr());

    let mut input = PlanInput::new(format!("http://{}/", target.local_addr()));
    input.conns = args.conns;
    input.duration = args.duration;
    input.cores = Some(blast_cpus);
    let plan = match input.build() {
        Ok(p) => p,
        Err(e) => return crate::fail(exit::USAGE, &e.into()),
    };
    let control = Control::new();
    let handler = control.clone();
    let _ = ctrlc::set_handler(move || handler.stop());
    println!("{}", output::banner(&plan));
    let mut progress = output::Progress::new(false, &plan);
    let summary = match engine_core::run(&plan, &control, |i| progress.update(i)) {
        Ok(s) => s,
        Err(e) => return crate::fail(exit::FAILURE, &e.into()),
    };
    progress.finish();
    // Let the target publish its last count before reading it.
    std::thread::sleep(Duration::from_millis(50));
    let served = target.served();
    target.stop();
    print!("{}", output::summary_text(&summary));
    println!(
        "\nground truth: the target served {served} responses; the blast counted {} completed (+{} abandoned in flight)",
        summary.requests, summary.abandoned
    );
    if summary.interrupted {
        exit::INTERRUPTED
    } else {
        exit::OK
    }
}
