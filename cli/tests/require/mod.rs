//! Tests that need a tool this repository does not build (nginx, Chromium, Prometheus,
//! promtool, openssl, curl, h2load) or root skip with one line saying what is missing under a plain
//! `cargo test`. `.ci/run` installs them and sets `ENGINE_TEST_REQUIRE=1`, under which a missing
//! one fails the test instead: CI never passes by skipping.

use std::path::Path;

/// The first of `candidates` (paths, or names looked up on PATH) that exists.
pub fn find(candidates: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|c| {
        if c.contains('/') {
            Path::new(c).exists().then(|| Path::new(c).to_path_buf())
        } else {
            std::env::split_paths(&path).map(|d| d.join(c)).find(|p| p.exists())
        }
    })
}

/// Whether the test can go on: `what` is there, or the test skips (one line) — unless
/// `ENGINE_TEST_REQUIRE` is set, when its absence fails the test.
pub fn have(test: &str, what: &str, there: bool, install: &str) -> bool {
    if there {
        return true;
    }
    // The test's thread is named after it.
    let current = std::thread::current();
    let test = current.name().unwrap_or(test);
    let required = std::env::var_os("ENGINE_TEST_REQUIRE").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "{test}: {what} is missing ({install}); ENGINE_TEST_REQUIRE is set, so this fails rather than skips"
    );
    // Straight to stderr: the test harness shows captured output only for failures.
    let line = format!("skipped {test}: {what} is missing ({install}; .ci/run installs it)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    false
}

/// Skips (returns from) the test when a tool is missing: `require!("nginx")`.
#[macro_export]
macro_rules! require {
    ($($tool:literal),+) => {
        $(
            if !$crate::require::tool(module_path!(), $tool) {
                return;
            }
        )+
    };
}

/// The tools the tests use, where Debian puts them, and the package that has them.
pub fn tool(test: &str, name: &str) -> bool {
    let (candidates, install): (&[&str], &str) = match name {
        "nginx" => (&["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"], "apt-get install nginx-light"),
        "chromium" => (&["/usr/bin/chromium", "/usr/bin/chromium-browser"], "apt-get install chromium"),
        "prometheus" => (&["prometheus"], "apt-get install prometheus"),
        "promtool" => (&["promtool"], "apt-get install prometheus"),
        "node-exporter" => (&["prometheus-node-exporter", "node_exporter"], "apt-get install prometheus-node-exporter"),
        "openssl" => (&["openssl"], "apt-get install openssl"),
        "curl" => (&["curl"], "apt-get install curl"),
        "h2load" => (&["h2load"], "apt-get install nghttp2-client"),
        "redis-server" => (&["redis-server", "/usr/bin/redis-server"], "apt-get install redis-server"),
        "redis-cli" => (&["redis-cli", "/usr/bin/redis-cli"], "apt-get install redis-server"),
        "root" => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            return have(test, "root (a network namespace)", root, "run as root");
        }
        other => panic!("unknown tool {other}"),
    };
    have(test, name, find(candidates).is_some(), install)
}
