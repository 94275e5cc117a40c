//! What the caller holds of a running blast: a stop button, and the errors that end a run
//! before it has a summary.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::shard;
use crate::steer::{Change, RunState, SteerError, Steering};
use engine_results::summary::Intervention;

/// After a stop, how long past its drain a shard may take to send its last snapshot
/// before it counts as stuck.
pub(crate) const LAST_WORD: Duration = Duration::from_millis(400);
/// The longest [`crate::run`] takes to return after [`Control::stop`], whatever the shards do.
pub const STOP_WITHIN: Duration = shard::DRAIN_INTERRUPTED.saturating_add(LAST_WORD);

/// Stops a run from another thread (a Ctrl-C handler, say). Cheap to clone.
#[derive(Clone, Default)]
pub struct Control {
    pub(crate) stop: Arc<AtomicBool>,
    /// The stop was the plan's own (a stress run that found its limit), not an interrupt.
    planned: Arc<AtomicBool>,
    /// Changes made while it runs (the control API).
    pub(crate) steering: Arc<Steering>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("stopped", &self.is_stopped()).finish_non_exhaustive()
    }
}

impl Control {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop: no new requests, a short drain, then the summary.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Ends the run early because it has what it was for; the summary is not marked
    /// interrupted.
    pub fn finish(&self) {
        self.planned.store(true, Ordering::Relaxed);
        self.stop();
    }

    /// Changes the running blast (the control API): a rate, connections, a pause, a resume
    /// from the next whole second, or a stop now (as the planned end would). Recorded in the
    /// summary's `interventions`.
    pub fn steer(&self, change: Change) -> Result<Intervention, SteerError> {
        if self.is_stopped() && change == Change::Stop {
            return Err(SteerError::Stopped);
        }
        let done = self.steering.steer(change)?;
        if change == Change::Stop {
            self.finish();
        }
        Ok(done)
    }

    /// Where the run is and what was changed; `None` before the load starts.
    pub fn run_state(&self) -> Option<RunState> {
        self.steering.state()
    }

    /// Stopped by [`Control::stop`] (Ctrl-C, say) rather than by [`Control::finish`].
    pub fn is_interrupted(&self) -> bool {
        self.is_stopped() && !self.planned.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("target {addr} is unreachable: {cause}")]
    Unreachable { addr: std::net::SocketAddr, cause: io::Error },
    #[error("TLS handshake with {addr} (as {name}) failed: {cause}{}", if advice.is_empty() { String::new() } else { format!("; {advice}") })]
    Handshake { addr: std::net::SocketAddr, name: String, cause: io::Error, advice: &'static str },
    #[error("safety stop '{stop}': {cause}")]
    Prometheus { stop: String, cause: crate::promql::PromError },
    #[error("cannot start shard {shard} on CPU {cpu}: {reason}")]
    Spawn { shard: usize, cpu: usize, reason: String },
}
