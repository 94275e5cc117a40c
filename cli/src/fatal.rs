//! No half-alive process. A panic in any thread (a shard, the admin API, the collector) is
//! a bug that leaves the rest of the process unable to do its job: a dead shard's share of
//! the port still accepts and never answers. So a panic prints one line naming the thread,
//! asks the running mode to stop as it would on Ctrl-C (a blast still writes what it
//! measured), and ends the process with [`exit::PANIC`] within [`PANIC_GRACE`] whatever
//! else is stuck. Signals get a deadline too ([`exit_after`]): a drain that cannot finish
//! because a shard is stuck does not keep the process alive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::exit;

/// How long after a panic the process may take to stop on its own before it is ended.
const PANIC_GRACE: Duration = Duration::from_millis(1500);

static PANICKED: AtomicBool = AtomicBool::new(false);
static ON_PANIC: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Replaces the default panic hook; call first thing in `main`.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = match engine_runtime::current_executor() {
            Some(executor) => format!("executor '{executor}'"),
            None => format!("thread '{}'", thread.name().unwrap_or("unnamed")),
        };
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = message.replace(['\n', '\r'], " ");
        eprintln!("engine: {name} panicked{at}: {message}; stopping (a bug: please report it)");
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
        if !PANICKED.swap(true, Ordering::SeqCst) {
            if let Some(stop) = ON_PANIC.get() {
                stop();
            }
            exit_after(PANIC_GRACE, exit::PANIC, format!("stopped {} s after the panic", PANIC_GRACE.as_secs_f64()));
        }
    }));
}

/// What the running mode does when a thread panics: stop as on Ctrl-C. Set once.
pub fn on_panic(stop: impl Fn() + Send + Sync + 'static) {
    let _ = ON_PANIC.set(Box::new(stop));
}

/// Whether a thread has panicked: the mode then exits with [`exit::PANIC`].
pub fn panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

/// `code`, or [`exit::PANIC`] when a thread panicked.
pub fn or_panic(code: u8) -> u8 {
    if panicked() {
        exit::PANIC
    } else {
        code
    }
}

/// Ends the process with `code` after `after`, saying why, unless it ended before.
pub fn exit_after(after: Duration, code: u8, why: String) {
    let spawned = std::thread::Builder::new().name("deadline".into()).spawn(move || {
        std::thread::sleep(after);
        eprintln!("engine: {why}");
        std::process::exit(i32::from(code));
    });
    if spawned.is_err() {
        // No thread to wait in: end now rather than never.
        std::process::exit(i32::from(code));
    }
}
