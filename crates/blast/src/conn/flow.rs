//! What a connection sends next: one of the plan's weighted requests, or the next step of
//! the flow its user walks, with the values that flow has captured so far.

use std::time::Duration;

use engine_http::response::Capture;
use engine_http::RetryAfter;

use crate::check::Seen;
use crate::plan::CaptureSource;
use crate::plan::OnFailure;
use crate::state::Shard;

/// One turn: the request to send and, in a flow, its step.
pub(super) struct Turn {
    /// Index into the plan's requests.
    pub request: usize,
    /// What to keep of the response for this step's captures.
    pub capture: Option<Box<Capture>>,
}

/// A connection's place in the plan: which flow and step its user is at, and the values
/// its flow captured (by the plan's capture index).
pub(super) struct Cursor {
    /// The plan's part (scenario) its connection serves.
    part: usize,
    flows: bool,
    several: bool,
    flow: usize,
    step: usize,
    /// Inside an iteration (a step has been chosen and the flow's end not reached).
    iterating: bool,
    /// This user has passed its flow's `once` steps.
    onced: bool,
    /// Arrival-rate flows: every iteration is a user of its own, who leaves at its end.
    user_per_iteration: bool,
    /// This user has walked a step of its flow, which has teardown steps: it runs them when
    /// it leaves.
    owes: bool,
    /// The user is leaving: walking its flow's teardown steps.
    tearing: bool,
    /// After its teardown, a new user takes this place (`abort-user`, a ramp's parking).
    renew: bool,
    /// The pause the leaving user's last step asked for, taken after its teardown.
    after: Duration,
    /// The status of the iteration's last step (0: none yet, or no response), for `if`.
    last_status: u16,
    /// The capture buffer, kept between steps so the steady state allocates nothing.
    kept: Option<Box<Capture>>,
    pub values: Vec<Vec<u8>>,
}

impl Cursor {
    pub fn new(shard: &Shard, part: usize) -> Self {
        let plan = shard.plan();
        Cursor {
            part,
            flows: !plan.parts[part].flows.is_empty(),
            several: plan.named(),
            flow: 0,
            step: 0,
            iterating: false,
            onced: false,
            user_per_iteration: plan.parts[part].arrival_flows(),
            owes: false,
            tearing: false,
            renew: false,
            after: Duration::ZERO,
            last_status: 0,
            kept: None,
            values: vec![Vec::new(); plan.captures.len()],
        }
    }

    /// Between iterations: a user starting, or back at the start after the flow's end or a
    /// failure.
    pub fn at_start(&self) -> bool {
        !self.iterating
    }

    /// A new user takes this place: no captures, its `once` steps still to run (a teardown
    /// the user before it still owed is dropped: it had no connection to run it on).
    pub fn new_user(&mut self, shard: &Shard) {
        self.set_owes(shard, false);
        (self.tearing, self.renew) = (false, false);
        self.onced = false;
        self.iterating = false;
        for v in &mut self.values {
            v.clear();
        }
    }

    /// The first step at or after `from` this iteration runs: a `once` step only until the
    /// user has passed them, a step with a condition when it holds, a step with a
    /// probability when the draw says so.
    fn runnable_from(&self, shard: &Shard, from: usize) -> Option<usize> {
        let steps = &shard.plan().flows[self.flow].steps;
        (from..steps.len()).find(|&i| {
            let (r, when) = (&steps[i].rules, &steps[i].when);
            !(r.teardown || (r.once && self.onced))
                && when.as_ref().is_none_or(|w| w.holds(self.last_status, &self.values))
                && (r.probability >= 1.0 || shard.random() < r.probability)
        })
    }

    /// Whether responses are recorded per request name.
    pub fn named(&self) -> bool {
        self.several
    }

    /// The plan's part (scenario) it walks.
    pub fn part(&self) -> usize {
        self.part
    }

    /// The next request to send.
    pub fn turn(&mut self, shard: &Shard) -> Turn {
        let request = if !self.flows {
            if self.several {
                shard.pick_request(self.part)
            } else {
                0
            }
        } else {
            if !self.iterating {
                self.flow = shard.pick_flow(self.part);
                self.last_status = 0;
                // Every flow has a step that always runs (the plan checks it).
                self.step = self.runnable_from(shard, 0).unwrap_or(0);
                self.iterating = true;
            }
            let flow = &shard.plan().flows[self.flow];
            let st = &flow.steps[self.step];
            if !st.rules.once && !st.rules.teardown {
                self.onced = true;
                if !self.owes && flow.steps.last().is_some_and(|s| s.rules.teardown) {
                    self.set_owes(shard, true);
                }
            }
            st.request
        };
        // Only a request with checks or captures keeps anything of its response; the buffer
        // is made at the first such request and reused after.
        let capture = shard.plan().requests[request].keep.as_ref().map(|k| {
            let mut c = self.kept.take().unwrap_or_default();
            c.want_headers(&k.headers);
            c.body = k.body;
            c
        });
        Turn { request, capture }
    }

    /// Hands back the capture buffer for the next request that keeps something.
    pub fn keep_buffer(&mut self, c: Box<Capture>) {
        self.kept = Some(c);
    }

    /// The turn ended (`ok`: a complete response of an expected status that passed its
    /// checks): keep what the step captured and move the user on. A failed step does what its
    /// `on_failure` says; by default it ends the user's iteration, and the next one starts
    /// from the flow's first step (log in again, say) after the failed step's think time, or
    /// the `Retry-After` its answer carried (at most the flow's `retry_after_max`), as a user
    /// would: a user that retried at once would turn a refusal into a storm. Returns the time
    /// to wait before the next step.
    /// `status`: the response's (0: none).
    pub fn advance(
        &mut self,
        shard: &Shard,
        (ok, status): (bool, u16),
        retry_after: Option<RetryAfter>,
        seen: Option<&mut Seen<'_>>,
    ) -> Duration {
        if !self.flows {
            return Duration::ZERO;
        }
        self.last_status = status;
        let flow = &shard.plan().flows[self.flow];
        let st = &flow.steps[self.step];
        if let Some(seen) = seen {
            apply_captures(&st.captures, seen, &mut self.values);
        }
        if self.tearing {
            // Teardown steps are the flow's last ones, each run once whatever it answered.
            if self.step + 1 < flow.steps.len() {
                self.step += 1;
                return Duration::ZERO;
            }
            return self.end_teardown(shard);
        }
        let ended = match (ok, st.rules.on_failure) {
            (true, _) | (false, OnFailure::Continue) => match self.runnable_from(shard, self.step + 1) {
                Some(next) => {
                    self.step = next;
                    false
                }
                None => true,
            },
            (false, OnFailure::NextIteration) => true,
            (false, OnFailure::AbortUser) => {
                self.renew = true;
                true
            }
        };
        let wait = match retry_after {
            Some(r) if !ok && ended && !flow.retry_after_max.is_zero() => {
                let asked = r.seconds_from(unix_now());
                Duration::from_secs_f64(asked.min(flow.retry_after_max.as_secs_f64()))
            }
            _ => st.rules.think.draw(|| shard.random()),
        };
        if ended {
            // The user leaves after each arrival-rate iteration, and when sent away: its
            // teardown first, then the pause its last step asked for.
            if (self.user_per_iteration || self.renew) && self.start_teardown(shard) {
                self.after = wait;
                return Duration::ZERO;
            }
            if std::mem::take(&mut self.renew) {
                self.new_user(shard);
            }
            self.iterating = false;
            self.step = 0;
        }
        wait
    }

    /// The user is leaving (the run ended, a ramp parks its connection, or its connection
    /// is gone): whether it now walks its teardown steps. Either way, a new user takes this
    /// place afterwards.
    pub fn leave(&mut self, shard: &Shard) -> bool {
        if self.tearing {
            return true;
        }
        self.renew = true;
        if self.start_teardown(shard) {
            return true;
        }
        self.new_user(shard);
        false
    }

    /// Walking the flow's teardown steps now.
    pub fn tearing(&self) -> bool {
        self.tearing
    }

    /// The user's teardown cannot run (no connection to run it on): it is dropped.
    pub fn give_up(&mut self, shard: &Shard) {
        if self.tearing {
            self.end_teardown(shard);
        }
    }

    /// Starts the teardown steps of the flow the user walked, if it owes them.
    fn start_teardown(&mut self, shard: &Shard) -> bool {
        if !self.owes {
            return false;
        }
        let steps = &shard.plan().flows[self.flow].steps;
        match steps.iter().position(|s| s.rules.teardown) {
            Some(first) => {
                (self.tearing, self.iterating, self.step) = (true, true, first);
                true
            }
            None => false,
        }
    }

    /// The teardown is over: the user is gone; returns the pause its last step asked for.
    fn end_teardown(&mut self, shard: &Shard) -> Duration {
        self.set_owes(shard, false);
        (self.tearing, self.iterating, self.step) = (false, false, 0);
        if std::mem::take(&mut self.renew) {
            self.new_user(shard);
        }
        std::mem::take(&mut self.after)
    }

    fn set_owes(&mut self, shard: &Shard, owes: bool) {
        if self.owes != owes {
            self.owes = owes;
            shard.owe_teardown(owes);
        }
    }
}

/// Stores what a flow step captured. A value that is missing leaves the variable as it was.
fn apply_captures(wanted: &[(usize, CaptureSource)], seen: &mut Seen<'_>, values: &mut [Vec<u8>]) {
    for (var, source) in wanted {
        let value = match source {
            CaptureSource::Header(name) => seen.header(name).map(<[u8]>::to_vec),
            CaptureSource::Json(path) => seen.json().and_then(|j| path.query(j).first()).map(|v| match v {
                serde_json::Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            }),
        };
        if let Some(v) = value {
            values[*var] = v;
        }
    }
}

/// Now, in Unix seconds (a Retry-After may be a date).
fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
