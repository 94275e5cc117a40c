//! `engine report merge`: flags, then `engine_results::merge`, then print.

use std::path::PathBuf;

use clap::Args;
use engine_results::merge::{self, Input};
use engine_results::thresholds::Expr;

use crate::exit;

#[derive(Args, Debug)]
#[command(
    about = "Merge the results of several workers (or .hlog files) into one run",
    long_about = "Merge the results folders of workers that ran one plan together (engine blast --worker-index I \
        --worker-count N --start-at T) into one results folder: latency histograms added exactly from every \
        latency.hlog, counts summed, time series aligned on wall-clock seconds, the workers' thresholds (and \
        --threshold) judged on the merged run. Bare .hlog files merge latency only. Exit 4 when a threshold fails.",
    after_help = "Example:\n  engine report merge results/w0 results/w1 results/w2 --out results/merged"
)]
pub struct MergeArgs {
    /// Results folders (or latency .hlog files)
    #[arg(required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The merged results folder (default: `results/<timestamp>-merged/`)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// More thresholds to judge the merged run by (repeatable)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    threshold: Vec<Expr>,
    /// Merge runs that are not workers of one run (another target, model, requests or worker
    /// count, or loads that did not overlap in time); refused without it
    #[arg(long)]
    force: bool,
}

pub fn main(args: MergeArgs) -> u8 {
    match run(&args) {
        Ok(code) => code,
        Err(e) => crate::fail(exit::USAGE, &e),
    }
}

fn run(args: &MergeArgs) -> anyhow::Result<u8> {
    let inputs = args.inputs.iter().map(|p| Input::read(p)).collect::<Result<Vec<_>, _>>()?;
    let merged = merge::merge(&args.inputs, &inputs, &args.threshold, args.force)?;
    let out = engine_results::folder::create(args.out.as_deref(), "-merged")?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    merged.write(&out, &command, &inputs)?;
    print!("{}", engine_results::render::text(&merged.summary));
    eprintln!("results: {}", out.display());
    Ok(crate::verdict(&merged.summary))
}
