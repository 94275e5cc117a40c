//! No flag value makes the engine panic. Extreme and malformed values (huge, negative, NaN,
//! non-ASCII, empty, overflowing, control characters) go to every duration, time, number,
//! list and address flag of every subcommand; each run must end in a categorized way: exit 2
//! with one line on stderr, or (for a value that happens to be valid) the command's ordinary
//! outcome. Never exit 101 or a panic message. Servers that start with a valid value are
//! stopped after a moment.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;

/// Values no flag should take quietly, written out.
const FIXED: &[&str] = &[
    "",
    " ",
    "-",
    "--",
    "-1",
    "-0",
    "0",
    "-5s",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "1e-400",
    "1e30s",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "99999999999999999999999999999h",
    "0x10",
    "1_000",
    "1,5",
    "１２",
    "٣",
    "5 parsecs",
    "💥",
    "∞",
    "1.5.5",
    "..",
    ":",
    "::",
    "[::1",
    "256.1.1.1:80",
    "127.0.0.1:99999",
    "127.0.0.1:-1",
    "0.0.0.0/33",
    "10.0.0.0/0",
    "1-",
    "-1-3",
    "3-1",
    "0-1048576",
    "p99<",
    "p95<1e400ms",
    "promql:",
    "promql:>1",
    "promql:up>1e400",
    "promql:up>1 for 99999999999",
    "promql:{<1 for 0",
    "http://[::1",
    "http://127.0.0.1:99999/",
    "status in 999-100",
    "cap. exists",
    "error_rate<NaN%",
    "{name=}",
    "1:1s,",
    ":1s",
    "1e19:1s",
    "NaN:1s",
    "5:-1s",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "-5000-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "1e300",
    "%",
    "%s%n",
    "\u{202e}",
    "a\u{7}b",
];

/// Values no flag should take quietly: the written-out ones and generated ones.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIXED).prop_map(str::to_string),
        1 => "[0-9]{19,60}",
        1 => "-?[0-9]{1,4}(\\.[0-9]{1,8})?e-?[0-9]{2,4}(us|ms|s|m|h|%)?",
        1 => "\\PC{0,24}",
        1 => "[ -~]{0,40}",
    ]
}

/// Runs `engine ARGS` for at most `limit`; `None` when it was still running (a server that
/// took the value) and had to be stopped.
fn run(args: &[&str], limit: Duration) -> Option<(Option<i32>, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir(std::env::temp_dir())
        .spawn()
        .expect("engine starts");
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    status.map(|s| (s.code(), err))
}

/// The property for one command line holding the hostile value.
fn check(args: &[&str]) -> Result<(), TestCaseError> {
    let Some((code, err)) = run(args, Duration::from_secs(3)) else { return Ok(()) };
    prop_assert!(!err.contains("panicked"), "{args:?}: {err}");
    prop_assert_ne!(code, Some(101), "{:?}: {}", args, err);
    prop_assert!(code.is_some(), "{args:?} ended by a signal: {err}");
    if code == Some(2) {
        prop_assert_eq!(err.lines().count(), 1, "{:?}: {}", args, err);
        prop_assert!(err.starts_with("engine: "), "{args:?}: {err}");
    }
    Ok(())
}

/// `(subcommand and its other flags, flag under test)`: the other flags make a command that
/// runs nowhere (a closed port) or on a free loopback port.
const CASES: &[(&[&str], &str)] = &[
    (&["blast", "http://127.0.0.1:1/"], "--conns"),
    (&["blast", "http://127.0.0.1:1/"], "--duration"),
    (&["blast", "http://127.0.0.1:1/"], "--rate"),
    (&["blast", "http://127.0.0.1:1/"], "--stages"),
    (&["blast", "http://127.0.0.1:1/", "--profile", "stress"], "--peak"),
    (&["blast", "http://127.0.0.1:1/", "--profile", "soak", "--peak", "10"], "--step"),
    (&["blast", "http://127.0.0.1:1/"], "--threshold"),
    (&["blast", "http://127.0.0.1:1/"], "--abort-on"),
    (&["blast", "http://127.0.0.1:1/"], "--abort-grace"),
    (&["blast", "http://127.0.0.1:1/", "--abort-on", "promql:up<1"], "--prometheus"),
    (&["blast", "http://127.0.0.1:1/"], "--check"),
    (&["blast", "http://127.0.0.1:1/"], "--timeout"),
    (&["blast", "http://127.0.0.1:1/"], "--connect-timeout"),
    (&["blast", "http://127.0.0.1:1/"], "--shards"),
    (&["blast", "http://127.0.0.1:1/"], "--cores"),
    (&["blast", "http://127.0.0.1:1/"], "--busy-poll"),
    (&["blast", "http://127.0.0.1:1/", "--worker-count", "3"], "--worker-index"),
    (&["blast", "http://127.0.0.1:1/", "--worker-index", "0"], "--worker-count"),
    (&["blast", "http://127.0.0.1:1/"], "--start-at"),
    (&["blast", "http://127.0.0.1:1/"], "--source-ips"),
    (&["blast", "http://127.0.0.1:1/"], "--metrics-addr"),
    (&["blast", "http://127.0.0.1:1/"], "--push"),
    (&["blast", "http://127.0.0.1:1/"], "--header"),
    (&["blast", "http://127.0.0.1:1/"], "--method"),
    (&["blast"], "--scenario"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--admin", "off"], "--listen"),
    (&["proxy", "--listen", "127.0.0.1:0", "--admin", "off"], "--upstream"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0"], "--admin"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "off"], "--shards"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "off"], "--max-conns"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "off"], "--header-timeout"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "off"], "--drain-timeout"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "off"], "--busy-poll"),
    (&["proxy", "--upstream", "127.0.0.1:1", "--listen", "127.0.0.1:0", "--admin", "off"], "--route"),
    (&["target", "--listen", "127.0.0.1:0"], "--delay"),
    (&["target", "--listen", "127.0.0.1:0"], "--body-size"),
    (&["target", "--listen", "127.0.0.1:0"], "--shards"),
    (&["target"], "--listen"),
    (&["demo"], "--conns"),
    (&["demo"], "--duration"),
    (&["report", "windows", "/nonexistent"], "--every"),
    (&["report", "compare", "/nonexistent/a", "/nonexistent/b"], "--max-regression"),
    (&["report", "combine", "/nonexistent/a"], "--out"),
];

fn with_value(base: &[&str], flag: &str, value: &str) -> Vec<String> {
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    // `--flag=VALUE`, so a value that starts with '-' is still the flag's.
    args.push(format!("{flag}={value}"));
    args
}

/// Every written-out value to every flag, a few processes at a time.
#[test]
fn no_written_out_value_makes_the_engine_panic() {
    let jobs: Vec<Vec<String>> =
        CASES.iter().flat_map(|(base, flag)| FIXED.iter().map(|v| with_value(base, flag, v))).collect();
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(args) = jobs.get(i) else { break };
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                if let Err(e) = check(&args) {
                    failures.lock().unwrap().push(e.to_string());
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {} runs:\n{}", failures.len(), jobs.len(), failures.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_flag_value_makes_the_engine_panic(value in hostile()) {
        prop_assume!(!value.contains('\0'));
        for (base, flag) in CASES {
            let args = with_value(base, flag, &value);
            check(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
    }
}
