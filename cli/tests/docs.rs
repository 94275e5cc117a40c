//! Every example in README.md and docs/ runs, so a renamed flag breaks the build, not the
//! reader. Each page's ```sh blocks are one bash script, run in order in a scratch directory
//! with the `engine` under test first on PATH, under `set -euo pipefail`:
//!
//! - a block right after `<!-- file: NAME -->` is written to NAME first (scenarios, fault rules);
//! - every loopback port a page names (`127.0.0.1:8080`, `localhost:9901`) is replaced by a free
//!   one, the same throughout the page, and any other address fails the test (loopback only);
//! - `-d`/`--duration` of a blast above 2 s becomes 2 s (flags and values are still checked);
//! - a line ending in `&` starts a server: the script waits until the line's `--listen` port
//!   accepts, and every process the page started is killed when it ends;
//! - an `engine` line outside ```sh blocks must be a synopsis (`<ARG>` or `[OPTION]`).
//!
//! A page's example that is meant to fail says so in shell (`... || test $? -eq 4`).

mod ports;
#[macro_use]
mod require;

use ports::free_port;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// A page's runnable parts: the script, and the files it names.
struct Page {
    script: String,
    files: Vec<(String, String)>,
    /// `engine` lines outside sh blocks that are not synopses.
    stray: Vec<String>,
}

fn parse(text: &str) -> Page {
    let (mut script, mut files, mut stray) = (String::new(), Vec::new(), Vec::new());
    let mut lines = text.lines().peekable();
    let mut file_next: Option<String> = None;
    while let Some(line) = lines.next() {
        if let Some(name) = line.trim().strip_prefix("<!-- file: ").and_then(|r| r.strip_suffix(" -->")) {
            file_next = Some(name.to_string());
            continue;
        }
        let Some(info) = line.trim_start().strip_prefix("```") else { continue };
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        if let Some(name) = file_next.take() {
            files.push((name, body));
        } else if info.trim() == "sh" {
            script.push_str(&body);
        } else {
            for l in body.lines() {
                let l = l.trim_start().trim_start_matches("$ ");
                if l.starts_with("engine ") && !(l.contains('<') || l.contains('[')) {
                    stray.push(l.to_string());
                }
            }
        }
    }
    Page { script, files, stray }
}

/// Loopback ports named in `script`, each mapped to a free one (the same in every text of a
/// page: `map` holds the page's choices); any other address is an error.
fn remap_ports(script: &str, map: &mut BTreeMap<String, u16>) -> Result<String, String> {
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(at) = rest.find(|c: char| c.is_ascii_digit() || c == 'l') {
        let (before, tail) = rest.split_at(at);
        out.push_str(before);
        let host_len = ["127.0.0.1:", "localhost:"].iter().find(|h| tail.starts_with(*h)).map(|h| h.len());
        let Some(host_len) = host_len else {
            // An IPv4 address that is not loopback is refused; other digits pass.
            let word: String = tail.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            if word.split('.').count() == 4 && !word.starts_with("127.") && word != "0.0.0.0" {
                return Err(format!("{word}: examples reach loopback only"));
            }
            let n = word.len().max(1);
            out.push_str(&tail[..n]);
            rest = &tail[n..];
            continue;
        };
        let digits: String = tail[host_len..].chars().take_while(char::is_ascii_digit).collect();
        out.push_str(&tail[..host_len]);
        if digits.is_empty() || digits == "0" {
            rest = &tail[host_len..];
            continue;
        }
        let port = *map.entry(digits.clone()).or_insert_with(free_port);
        out.push_str(&port.to_string());
        rest = &tail[host_len + digits.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Seconds in a duration such as `30s`, `1m`, `500ms`, `2h` (None for anything else).
fn seconds(d: &str) -> Option<f64> {
    let split = d.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = d.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    })
}

/// Blasts run at most 2 s; servers started with `&` are waited for.
fn adapt(script: &str) -> String {
    let mut out = String::new();
    // A command continued over lines (`\` at the end) is one line here.
    for line in script.replace("\\\n", " ").lines() {
        let mut words: Vec<String> = line.split(' ').map(String::from).collect();
        if line.contains("engine blast") {
            for i in 1..words.len() {
                if matches!(words[i - 1].as_str(), "-d" | "--duration") && seconds(&words[i]).is_some_and(|s| s > 2.0) {
                    words[i] = "2s".into();
                }
            }
        }
        out.push_str(&words.join(" "));
        out.push('\n');
        if line.trim_end().ends_with('&') {
            if let Some(port) = listen_port(line) {
                out.push_str(&format!("wait_for_port {port}\n"));
            }
        }
    }
    out
}

/// The port a server line listens on (`--listen 127.0.0.1:PORT` or `-l ...`).
fn listen_port(line: &str) -> Option<u16> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "--listen" || *w == "-l")?;
    words.get(i + 1)?.rsplit(':').next()?.parse().ok()
}

const PRELUDE: &str = r#"set -euo pipefail
wait_for_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1 after 10 s" >&2
    return 1
}
"#;

#[test]
fn every_example_in_the_readme_and_docs_runs() {
    require!("openssl", "curl");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_engine")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut failures = Vec::new();
    let mut ran = 0;
    for page in pages() {
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        let p = parse(&std::fs::read_to_string(&page).unwrap());
        for s in &p.stray {
            failures.push(format!("{name}: `{s}` is outside a ```sh block, so no test runs it"));
        }
        if p.script.trim().is_empty() {
            continue;
        }
        let mut ports = BTreeMap::new();
        let files: Result<Vec<(String, String)>, String> =
            p.files.iter().map(|(f, body)| Ok((f.clone(), remap_ports(body, &mut ports)?))).collect();
        let (script, files) = match (remap_ports(&p.script, &mut ports), files) {
            (Ok(s), Ok(files)) => (adapt(&s), files),
            (Err(e), _) | (_, Err(e)) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        match run(&name, &script, &files, &path) {
            Ok(()) => ran += 1,
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 5, "only {ran} pages with examples");
}

/// Runs one page's script in a scratch directory holding its files.
fn run(name: &str, script: &str, files: &[(String, String)], path: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("engine-docs-{}-{}", std::process::id(), name.replace('/', "-")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, body) in files {
        std::fs::write(dir.join(file), body).unwrap();
    }
    std::fs::write(dir.join("examples.sh"), format!("{PRELUDE}{script}")).unwrap();
    // Its own process group, so the servers it starts are killed with it. Output goes to
    // files: a server left running would hold a pipe open past the script's end.
    let log = |n: &str| std::fs::File::create(dir.join(n)).unwrap();
    let mut child = Command::new("bash")
        .arg("examples.sh")
        .process_group(0)
        .current_dir(&dir)
        .env("PATH", path)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(log("stdout.log"))
        .stderr(log("stderr.log"))
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        match child.try_wait().unwrap() {
            Some(s) => break Some(s),
            None if Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    // SAFETY: SIGKILL to the process group the script leads (process_group(0) made it).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!(
            "{name}: the examples failed ({s}); script and output in {}\n--- stderr (end) ---\n{}",
            dir.display(),
            tail(&stderr, 30)
        )),
        None => Err(format!("{name}: the examples did not finish within 240 s; see {}", dir.display())),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn the_runner_maps_ports_and_refuses_other_hosts() {
    let mut map = BTreeMap::new();
    let s = remap_ports("engine blast http://127.0.0.1:8080/ && curl localhost:8080/x 127.0.0.1:0", &mut map).unwrap();
    assert!(!s.contains(":8080"), "{s}");
    let port = s.split("127.0.0.1:").nth(1).unwrap().split('/').next().unwrap().to_string();
    assert!(s.contains(&format!("localhost:{port}/x")), "one port, mapped once: {s}");
    assert!(s.ends_with("127.0.0.1:0"), "{s}");
    let file = remap_ports("target = \"http://127.0.0.1:8080\"", &mut map).unwrap();
    assert_eq!(file, format!("target = \"http://127.0.0.1:{port}\""), "files share the page's ports");
    assert!(remap_ports("engine blast http://10.0.0.5:8080/", &mut map).is_err());
    assert_eq!(adapt("engine blast x -d 30s -c 5\n"), "engine blast x -d 2s -c 5\n");
    assert_eq!(adapt("engine blast x -d 1s\n"), "engine blast x -d 1s\n");
    assert_eq!(
        adapt("engine proxy \\\n  --listen 127.0.0.1:99 &\n"),
        "engine proxy    --listen 127.0.0.1:99 &\nwait_for_port 99\n"
    );
    let page = parse("<!-- file: a.toml -->\n```toml\nx = 1\n```\n```sh\nengine demo\n```\n```\nengine blast x\n```\n");
    assert_eq!(page.files, vec![("a.toml".to_string(), "x = 1\n".to_string())]);
    assert_eq!(page.script, "engine demo\n");
    assert_eq!(page.stray, vec!["engine blast x".to_string()]);
}

/// Every `--flag` the pages name exists in some `engine ... --help`: a flag list in a text
/// block or a flag in prose drifts as surely as an example.
#[test]
fn every_flag_the_pages_name_exists() {
    let help = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_engine")).args(args).arg("--help").output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut known = String::new();
    for sub in [&["blast"][..], &["proxy"], &["target"], &["demo"], &["report", "compare"], &["report", "html"]] {
        known.push_str(&help(sub));
    }
    for sub in [&["report", "merge"][..], &["report", "windows"], &["report", "live"]] {
        known.push_str(&help(sub));
    }
    let flags_in = |text: &str| -> Vec<String> {
        let b = text.as_bytes();
        let mut found = Vec::new();
        for i in 0..b.len().saturating_sub(2) {
            let starts = b[i] == b'-' && b[i + 1] == b'-' && b[i + 2].is_ascii_lowercase();
            if starts && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-')) {
                let end =
                    (i + 2..b.len()).find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'-')).unwrap_or(b.len());
                found.push(text[i..end].trim_end_matches('-').to_string());
            }
        }
        found
    };
    // Other tools' flags the pages use beside the engine's.
    let others = ["--release", "--for", "--nocapture", "--test"];
    let mut unknown = Vec::new();
    for page in pages() {
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        for flag in flags_in(&std::fs::read_to_string(&page).unwrap()) {
            let word = |h: &str| h.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).any(|w| w == flag);
            if !word(&known) && !others.contains(&flag.as_str()) {
                unknown.push(format!("{name}: {flag}"));
            }
        }
    }
    unknown.dedup();
    assert!(unknown.is_empty(), "flags no --help knows:\n{}", unknown.join("\n"));
}
