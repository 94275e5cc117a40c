//! One signal path for every mode. The first SIGINT or SIGTERM stops the mode the way it stops
//! itself (a blast drains and writes its summary, the proxy drains its connections, the
//! target closes them), and the process ends anyway past the mode's deadline, saying so: a
//! stuck shard does not hold it. A second signal ends it at once (exit 130; the proxy cuts
//! its connections and prints what it served). SIGHUP does what the mode asks, or nothing (a
//! supervisor may send it to the whole process group). A panic stops the mode as the first
//! signal does, unless the mode said otherwise first ([`crate::fatal::on_panic`]).

use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::exit;

/// A blast's signals (`engine blast`, `engine demo`): the first stops the run (a short drain,
/// then the summary, written within STOP_WITHIN); a second leaves at once. `what` names the
/// mode in the line printed if the stop overruns.
pub fn stop_run(control: &engine_blast::Control, what: &str) {
    let handler = control.clone();
    let deadline = engine_blast::blast::STOP_WITHIN + Duration::from_secs(1);
    let late = format!("{what} did not stop in time; exiting");
    let on = OnSignals::new(move || handler.stop(), deadline, exit::INTERRUPTED, &late);
    if let Err(e) = on.install() {
        eprintln!("engine: warning: cannot handle signals (Ctrl-C will not write the summary): {e}");
    }
}

/// What a mode does on its signals.
pub struct OnSignals {
    first: Arc<dyn Fn() + Send + Sync>,
    second: Box<dyn Fn() + Send>,
    deadline: Duration,
    late_code: u8,
    late_why: String,
    hup: Option<Box<dyn Fn() + Send>>,
}

impl OnSignals {
    /// `first` on the first signal (and a panic); past `deadline` after it the process ends
    /// with `late_code`, saying `late_why`.
    pub fn new(first: impl Fn() + Send + Sync + 'static, deadline: Duration, late_code: u8, late_why: &str) -> Self {
        OnSignals {
            first: Arc::new(first),
            second: Box::new(|| std::process::exit(exit::INTERRUPTED as i32)),
            deadline,
            late_code,
            late_why: late_why.to_string(),
            hup: None,
        }
    }

    /// What a second signal does, for a mode whose "at once" says something first.
    pub fn second(mut self, second: impl Fn() + Send + 'static) -> Self {
        self.second = Box::new(second);
        self
    }

    /// What SIGHUP does.
    pub fn hup(mut self, hup: impl Fn() + Send + 'static) -> Self {
        self.hup = Some(Box::new(hup));
        self
    }

    /// Handles the signals from now on, on a thread of their own.
    pub fn install(self) -> std::io::Result<()> {
        let on_panic = self.first.clone();
        crate::fatal::on_panic(move || on_panic());
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let mut stopping = false;
            for sig in signals.forever() {
                match sig {
                    SIGHUP => {
                        if let Some(hup) = &self.hup {
                            hup();
                        }
                    }
                    _ if stopping => (self.second)(),
                    _ => {
                        stopping = true;
                        crate::fatal::exit_after(self.deadline, self.late_code, self.late_why.clone());
                        (self.first)();
                    }
                }
            }
        })?;
        Ok(())
    }
}
