//! report.html in a real headless browser (Debian's chromium; `.ci/run` installs it):
//! it renders its charts with no script error, draws a non-blank page and fetches nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use engine_target::{Target, TargetConfig};

fn chromium(args: &[&str], page: &Path, profile: &Path) -> std::process::Output {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("chromium not found: apt-get install -y chromium (.ci/run does)");
    Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs")
}

#[test]
fn report_renders_in_chromium_without_errors_or_network() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-html-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &format!("http://{}/", t.local_addr()), "-c", "4", "-d", "2s", "-q", "--threshold", "p99<1s"])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let page = dir.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no external script, style sheet, image or frame.
    for needle in ["<link", "src=\"http", "src='http", "href=\"http", "url(http", "<iframe", "<img"] {
        assert!(!html.contains(needle), "report.html references something external: {needle}");
    }

    // The script ran to its end: three charts and the marker it sets last.
    let profile = dir.join("chromium-profile");
    let netlog = dir.join("netlog.json");
    let o = chromium(
        &["--enable-logging=stderr", "--v=0", &format!("--log-net-log={}", netlog.display()), "--dump-dom"],
        &page,
        &profile,
    );
    let dom = String::from_utf8_lossy(&o.stdout);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(dom.contains("data-rendered=\"ok\""), "the report script did not finish; browser log:\n{log}");
    assert_eq!(dom.matches("class=\"uplot").count(), 3, "three charts");
    assert!(!log.contains("Uncaught"), "script error:\n{log}");
    // Chromium talks to its own (Google) hosts whatever the page does; nothing else may appear.
    let net = std::fs::read_to_string(&netlog).unwrap_or_default();
    for url in net.split("\"url\":\"").skip(1).filter_map(|s| s.split('"').next()) {
        let host = url.split("://").nth(1).unwrap_or("").split(['/', ':', '?']).next().unwrap_or("");
        let browser_own = ["google.com", "googleapis.com", "gstatic.com"]
            .iter()
            .any(|h| host == *h || host.ends_with(&format!(".{h}")));
        assert!(url.starts_with("file://") || url.starts_with("data:") || browser_own, "the page fetched {url}");
    }

    // A screenshot that is not blank: charts make it far larger than an empty page's.
    let shot = dir.join("shot.png");
    let _ = chromium(&["--window-size=1100,1600", &format!("--screenshot={}", shot.display())], &page, &profile);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 40_000, "screenshot of {size} bytes looks blank");
    let _ = std::fs::remove_dir_all(&dir);
}
