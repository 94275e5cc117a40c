//! What the caller holds of a running blast: a stop button, and the errors that end a run
//! before it has a summary.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::shard;

/// After a stop, how long past its drain a shard may take to send its last snapshot
/// before it counts as stuck.
pub(crate) const LAST_WORD: Duration = Duration::from_millis(400);
/// The longest [`crate::run`] takes to return after [`Control::stop`], whatever the shards do.
pub const STOP_WITHIN: Duration = shard::DRAIN_INTERRUPTED.saturating_add(LAST_WORD);

/// Stops a run from another thread (a Ctrl-C handler, say). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub(crate) stop: Arc<AtomicBool>,
    /// The stop was the plan's own (a stress run that found its limit), not an interrupt.
    planned: Arc<AtomicBool>,
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
