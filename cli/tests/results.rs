//! The results folder: its files, and latency.hlog read back by an independent reader.

// A test reads as one story from setup to the last assertion; the CLI's 60-line limit
// (cli/clippy.toml) is for its code.
#![allow(clippy::too_many_lines)]

use std::process::Command;
use std::time::Duration;

use engine_target::{Target, TargetConfig};
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;

#[test]
fn results_folder_holds_every_file_and_the_hlog_matches_the_summary() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-results-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["blast", &format!("http://{}/", t.local_addr()), "-c", "8", "-d", "2s", "-q", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["summary.json", "summary.md", "summary.csv", "timeseries.csv", "latency.hlog", "run.log"] {
        assert!(dir.join(f).metadata().map(|m| m.len() > 0).unwrap_or(false), "{f} missing or empty");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();

    let log = std::fs::read(dir.join("latency.hlog")).unwrap();
    let mut total: Histogram<u64> = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    let (mut uncorrected, mut ok, mut connects) = (0u64, 0u64, 0u64);
    let mut deserializer = Deserializer::new();
    for entry in IntervalLogIterator::new(&log) {
        let LogEntry::Interval(h) = entry.expect("a valid interval log") else { continue };
        let bytes = base64_decode(h.encoded_histogram());
        let hist: Histogram<u64> = deserializer.deserialize(&mut bytes.as_slice()).expect("a V2 histogram");
        match h.tag() {
            None => total.add(&hist).unwrap(),
            // The other tags: expected statuses (`ok`), status classes (`class:2xx`), names,
            // and the set-up figures (`connect`, `tls_handshake`).
            Some(tag) if tag.as_str() == "uncorrected" => uncorrected += hist.len(),
            Some(tag) if tag.as_str() == "ok" => ok += hist.len(),
            Some(tag) if tag.as_str() == "connect" => connects += hist.len(),
            Some(tag) => assert!(
                tag.as_str().starts_with("class:") || tag.as_str().starts_with("name:"),
                "unexpected tag {tag:?}"
            ),
        }
    }
    let requests = v["requests"].as_u64().unwrap();
    assert!(requests > 1000);
    assert_eq!(total.len(), requests);
    assert_eq!(uncorrected, requests);
    assert_eq!(ok, requests, "every response expected");
    assert_eq!(connects, v["connections"]["opened"].as_u64().unwrap());
    assert_eq!(total.value_at_quantile(0.99) as f64 / 1000.0, v["latency_ms"]["p99"].as_f64().unwrap());

    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    assert!(csv.starts_with("t_s,target,requests,rps"));
    assert!(csv.lines().count() >= 3);
    // summary.csv: the run's row carries the summary's figures.
    let table = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let run: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cell = |name: &str| run[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!((cell("scope"), cell("requests"), cell("verdict")), ("run", requests.to_string().as_str(), "passed"));
    assert_eq!(cell("p99_ms").parse::<f64>().unwrap(), v["latency_ms"]["p99"].as_f64().unwrap());
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains(&format!("| requests | {requests} |")));
    let run_log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(run_log.contains("plan: ") && run_log.contains("end: "));

    // `report windows`: the windows' counts add up to the run's, and one window as long as
    // the run has the run's own p99 (exact: histograms are added, not percentiles).
    let windows = |every: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["report", "windows"])
            .arg(&dir)
            .args(["--every", every])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.starts_with("start_s,end_s,responses,p50_ms,p90_ms,p99_ms,p999_ms,max_ms\n"), "{text}");
        text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>()).collect::<Vec<_>>()
    };
    let per_500ms = windows("500ms");
    assert!(per_500ms.len() >= 4, "{per_500ms:?}");
    assert_eq!(per_500ms.iter().map(|w| w[2].parse::<u64>().unwrap()).sum::<u64>(), requests);
    let whole = windows("1h");
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0][5].parse::<f64>().unwrap(), v["latency_ms"]["p99"].as_f64().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Standard base64 (the interval log's encoding), decoded here so the test does not share
/// the writer's code path.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(value(c))).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | x << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// `report merge` counts each run once, and a damaged log is refused with where it broke.
#[test]
fn merge_refuses_a_run_given_twice_and_names_a_damaged_log() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-merge-twice-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("http://{}/", t.local_addr());
    for name in ["w0", "w0-again"] {
        let o = Command::new(env!("CARGO_BIN_EXE_engine"))
            .current_dir(&dir)
            .args(["blast", &url, "-c", "2", "-d", "500ms", "-q", "--worker-index", "0", "--worker-count", "2"])
            .args(["--out", name])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["summary.json", "latency.hlog"] {
        std::fs::copy(dir.join("w0").join(f), copy.join(f)).unwrap();
    }
    let damaged = dir.join("damaged.hlog");
    let mut log = std::fs::read(dir.join("w0/latency.hlog")).unwrap();
    log.truncate(log.len() - 10);
    log.extend_from_slice(b"@@\n");
    std::fs::write(&damaged, log).unwrap();

    let merge = |inputs: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_engine"))
            .current_dir(&dir)
            .args(["report", "merge"])
            .args(inputs)
            .args(["--out", "merged"])
            .output()
            .unwrap();
        assert!(o.stdout.is_empty(), "a refused merge prints no summary");
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = merge(&["w0", "./w0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'w0' is given twice"), "{err}");
    let (code, err) = merge(&["w0", "copy"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'w0' and 'copy' hold the same latency log"), "{err}");
    let (code, err) = merge(&["w0", "w0-again"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'w0' and 'w0-again' are both worker 0 of 2"), "{err}");
    let (code, err) = merge(&["damaged.hlog"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'damaged.hlog', entry ") && err.contains("bad base64"), "{err}");
    assert!(!dir.join("merged").exists(), "a refused merge writes no folder");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two workers of a scenario with a fast and a slow request (a 40 ms delay fault on the slow
/// one's path through `engine proxy`): the merge judges each named threshold on that name's
/// own merged figures, and keeps `requests_by_name` with exact sums.
#[test]
fn merge_judges_named_thresholds_on_merged_named_figures() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let mut cfg = engine_proxy::ProxyConfig::new("127.0.0.1:0".parse().unwrap(), t.local_addr()).unwrap();
    let rule = r#"{"match": {"path_prefix": "/slow"}, "action": {"delay": {"ms": 40}}}"#;
    cfg.faults = vec![serde_json::from_str(rule).unwrap()];
    let proxy = engine_proxy::Proxy::start(cfg).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-merge-named-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("two.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
target = "http://{}"
thresholds = ["p99{{name=fast}}<30ms", "p99{{name=slow}}<30ms"]
[load]
conns = 8
duration = "2s"
[[request]]
name = "fast"
path = "/fast"
weight = 1
[[request]]
name = "slow"
path = "/slow"
weight = 1
"#,
            proxy.local_addr()
        ),
    )
    .unwrap();
    // Workers of one run load the target together (a merge refuses runs that did not overlap).
    let running: Vec<_> = (0..2)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_engine"))
                .current_dir(&dir)
                .args(["blast", "--scenario", "two.toml", "-q", "--worker-count", "2", "--json", "-"])
                .args(["--worker-index", &i.to_string(), "--out", &format!("w{i}"), "--shards", "1"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let workers: Vec<serde_json::Value> = running
        .into_iter()
        .map(|w| {
            let o = w.wait_with_output().unwrap();
            // Each worker alone fails the slow threshold: exit 4.
            assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice(&o.stdout).unwrap()
        })
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_engine"))
        .current_dir(&dir)
        .args(["report", "merge", "w0", "w1", "--out", "merged"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("merged/summary.json")).unwrap()).unwrap();
    let verdict = |expr: &str| m["thresholds"].as_array().unwrap().iter().find(|t| t["expr"] == expr).unwrap().clone();
    let fast = verdict("p99{name=fast}<30ms");
    let slow = verdict("p99{name=slow}<30ms");
    assert_eq!(fast["pass"], true, "the fast request's own p99: {fast}");
    assert_eq!(slow["pass"], false, "{slow}");
    assert!(slow["value"].as_f64().unwrap() >= 40.0, "{slow}");
    assert_eq!(fast["value"], m["requests_by_name"]["fast"]["latency_ms"]["p99"]);
    // The whole run's p99 is the slow one's: judging the fast name on it would have failed.
    assert!(m["latency_ms"]["p99"].as_f64().unwrap() >= 40.0);
    for name in ["fast", "slow"] {
        let sum: u64 = workers.iter().map(|w| w["requests_by_name"][name]["requests"].as_u64().unwrap()).sum();
        assert!(sum > 0);
        assert_eq!(m["requests_by_name"][name]["requests"], sum, "{name}");
        let errors: u64 =
            workers.iter().map(|w| w["requests_by_name"][name]["errors"]["total"].as_u64().unwrap()).sum();
        assert_eq!(m["requests_by_name"][name]["errors"]["total"], errors, "{name}");
    }
    assert_eq!(m["requests"].as_u64().unwrap(), workers.iter().map(|w| w["requests"].as_u64().unwrap()).sum::<u64>());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs that are not workers of one run are refused by name, unless `--force`: one after the
/// other, they would add up their peaks and stretch the duration over the gap.
#[test]
fn merge_refuses_runs_that_did_not_run_together() {
    let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("engine-merge-apart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("http://{}/", t.local_addr());
    for (name, path) in [("a", "/"), ("b", "/"), ("other", "/other")] {
        let o = Command::new(env!("CARGO_BIN_EXE_engine"))
            .current_dir(&dir)
            .args(["blast", &format!("{url}{}", &path[1..]), "-c", "2", "-d", "300ms", "-q", "--out", name])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    let merge = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_engine"))
            .current_dir(&dir)
            .args(["report", "merge"])
            .args(args)
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = merge(&["a", "other", "--out", "m1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("are not one plan (targets") && err.contains("--force"), "{err}");
    let (code, err) = merge(&["a", "b", "--out", "m2"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("'a' ended") && err.contains("before 'b' started"), "{err}");
    assert!(!dir.join("m2").exists());
    let (code, err) = merge(&["a", "b", "--out", "m3", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
