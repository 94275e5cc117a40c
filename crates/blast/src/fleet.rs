//! The shards of a run: started on their CPUs, each with a heartbeat, told when to start
//! together, and joined at the end, however each of them ended.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use engine_runtime::{Executor, Heartbeat, Pulse};
use glommio::{ExecutorJoinHandle, Placement};

use crate::control::{Control, RunError};
use crate::plan::Plan;
use crate::shard::{self, Message, ShardConfig};

/// io_uring submission depth per shard: room to batch the polls of many connections into
/// one `io_uring_enter`.
const RING_DEPTH: usize = 1024;
/// A shard reports at least once per interval, and its longest silences are the connect
/// phase (10 s at most) and the drain (2 s). A shard silent for longer than this is stuck
/// (an executor that no longer wakes up); the run then ends with what was measured and a
/// warning rather than hang.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(15);
/// An executor's thread runs its first task within milliseconds; one that has not after
/// this failed to start (glommio reports that only to its join handle).
const START_WITHIN: Duration = Duration::from_secs(2);
/// How often the collector looks for a stop or a dead shard while it waits.
pub(crate) const CHECK: Duration = Duration::from_millis(100);

pub(crate) struct Fleet {
    pub rx: mpsc::Receiver<(usize, Message)>,
    handles: Vec<ExecutorJoinHandle<()>>,
    heartbeats: Vec<Heartbeat>,
    start_txs: Vec<mpsc::Sender<Instant>>,
}

impl Fleet {
    /// Starts a shard per CPU of the plan. A shard that cannot start stops the others and
    /// fails the run: never a warning beside a 0-request success.
    pub fn start(plan: &Plan, control: &Control) -> Result<Fleet, RunError> {
        let plan_arc = Arc::new(plan.clone());
        let (tx, rx) = mpsc::channel();
        let mut fleet = Fleet { rx, handles: Vec::new(), heartbeats: Vec::new(), start_txs: Vec::new() };
        for (index, &cpu) in plan.shard_cpus.iter().enumerate() {
            let (start_tx, start_rx) = mpsc::channel();
            fleet.start_txs.push(start_tx);
            let cfg = ShardConfig {
                index,
                plan: plan_arc.clone(),
                tx: tx.clone(),
                start_rx,
                stop: control.stop.clone(),
                steering: control.steering.clone(),
            };
            let heartbeat = Heartbeat::new();
            fleet.heartbeats.push(heartbeat.clone());
            let spawned = Executor::new(format!("blast-{index}"), Placement::Fixed(cpu))
                .busy_poll(plan.busy_poll)
                .ring_depth(RING_DEPTH)
                .heartbeat(heartbeat)
                .spawn(move || shard::run(cfg));
            match spawned {
                Ok(h) => fleet.handles.push(h),
                Err(e) => {
                    control.stop();
                    for h in fleet.handles {
                        let _ = h.join();
                    }
                    return Err(RunError::Spawn { shard: index, cpu, reason: e.reason });
                }
            }
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether shard `i`'s thread died (a panic).
    pub fn died(&self, i: usize) -> bool {
        self.heartbeats[i].pulse() == Pulse::Died
    }

    /// Waits until every shard has connected (or died, or the watchdog ran out). A shard
    /// whose executor never started fails the run.
    pub fn wait_ready(&self, plan: &Plan) -> Result<(), RunError> {
        let mut ready = 0;
        let connecting = Instant::now();
        while ready < self.len() && connecting.elapsed() < WATCHDOG {
            if connecting.elapsed() > START_WITHIN {
                if let Some(i) = (0..self.len()).find(|&i| self.heartbeats[i].pulse() == Pulse::NotStarted) {
                    return Err(RunError::Spawn {
                        shard: i,
                        cpu: plan.shard_cpus[i],
                        reason: format!("its executor did not start within {START_WITHIN:?}"),
                    });
                }
            }
            match self.rx.recv_timeout(CHECK) {
                Ok((_, Message::Ready)) => ready += 1,
                Ok((_, Message::Snapshot(_))) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                // A shard that died while connecting never says it is ready.
                Err(mpsc::RecvTimeoutError::Timeout) if (0..self.len()).any(|i| self.died(i)) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        Ok(())
    }

    /// The common start, to every shard.
    pub fn start_all(&mut self, start: Instant) {
        for t in self.start_txs.drain(..) {
            let _ = t.send(start);
        }
    }

    /// Joins the shards; returns what the summary should say of those that did not end
    /// normally. `finished[i]`: shard `i` sent its last snapshot. When the collector gave up
    /// (`stuck`), a shard that neither finished nor died is abandoned: joining it would wait
    /// forever, and its thread ends with the process.
    pub fn join(self, stuck: bool, finished: &[bool]) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, h) in self.handles.into_iter().enumerate() {
            let pulse = self.heartbeats[i].pulse();
            if stuck && !finished[i] && pulse != Pulse::Died {
                let why = match pulse {
                    Pulse::Late(age) => format!("no heartbeat for {:.1} s", age.as_secs_f64()),
                    _ => "its heartbeat went on".to_string(),
                };
                warnings.push(format!(
                    "shard {i} stopped reporting and was abandoned ({why}); its figures end at its last report"
                ));
                continue;
            }
            if h.join().is_err() || pulse == Pulse::Died {
                warnings.push(format!("shard {i} died (a panic); its figures end at its last report"));
            }
        }
        warnings
    }
}
