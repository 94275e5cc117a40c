//! Following running blasts through their live pages' event streams (`engine report live`):
//! one thread per blast reads `GET /events` and keeps what its results folder will hold: the
//! summary so far (the final one after the `end` event) and the latency log's lines, so
//! several blasts merge exactly, as `engine report merge` merges their folders.
//!
//! A frame's log lines and time-series point are taken in only with the summary that follows
//! them, so the summary and the log always count the same responses.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

/// How long a blast's page may take to answer at first (it may be starting).
const CONNECT_FOR: Duration = Duration::from_secs(15);
/// A blast that sends nothing for this long is gone (it sends a frame a second).
const SILENT_FOR: Duration = Duration::from_secs(30);
/// Largest event line: a frame with its latency log lines is a few KiB; a summary of a run
/// with many named requests tens of KiB.
const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FollowError {
    #[error("'{0}': give a live page's address, http://HOST:PORT (a blast run with --dashboard)")]
    Url(String),
    #[error("'{url}': {reason}")]
    Resolve { url: String, reason: String },
    #[error("--dashboard {0}: the merged page is served on loopback only (an SSH tunnel reaches it)")]
    PageNotLoopback(SocketAddr),
}

/// Where the merged page may be served: loopback only, as it has no token of its own.
pub fn page_address(addr: SocketAddr) -> Result<SocketAddr, FollowError> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(FollowError::PageNotLoopback(addr))
    }
}

/// What one blast has sent so far.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub url: String,
    /// The summary so far with its time series; the final summary once `ended`.
    pub summary: Option<Value>,
    /// The latency log's text so far (header first).
    pub hlog: String,
    pub ended: bool,
    /// Why the stream stopped before the run ended.
    pub error: Option<String>,
}

/// The blasts being followed.
pub struct Follower {
    sources: Vec<Arc<Mutex<Source>>>,
    _threads: Vec<JoinHandle<()>>,
}

/// `http://HOST:PORT[/]` → the address and the Host header.
fn address(url: &str) -> Result<(SocketAddr, String), FollowError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| FollowError::Url(url.to_string()))?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(FollowError::Url(url.to_string()));
    }
    let addr = host
        .to_socket_addrs()
        .map_err(|e| FollowError::Resolve { url: url.to_string(), reason: e.to_string() })?
        .next()
        .ok_or_else(|| FollowError::Resolve { url: url.to_string(), reason: "no address".into() })?;
    Ok((addr, host.to_string()))
}

impl Follower {
    /// Starts following each of `urls` (checked first); `token` is sent as a bearer token.
    pub fn start(urls: &[String], token: Option<&str>) -> Result<Follower, FollowError> {
        let targets = urls.iter().map(|u| address(u).map(|a| (u.clone(), a))).collect::<Result<Vec<_>, _>>()?;
        let mut sources = Vec::new();
        let mut threads = Vec::new();
        for (url, (addr, host)) in targets {
            let source = Arc::new(Mutex::new(Source { url: url.clone(), ..Source::default() }));
            let (s, token) = (source.clone(), token.map(String::from));
            threads.push(std::thread::spawn(move || {
                let error = follow(addr, &host, token.as_deref(), &s).err();
                let mut s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if !s.ended {
                    s.error = Some(error.unwrap_or_else(|| "the stream ended before the run did".into()));
                }
            }));
            sources.push(source);
        }
        Ok(Follower { sources, _threads: threads })
    }

    /// What each blast has sent so far, in the order given.
    pub fn sources(&self) -> Vec<Source> {
        self.sources.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()).collect()
    }
}

/// Reads one blast's event stream into `source` until its `end` event.
fn follow(addr: SocketAddr, host: &str, token: Option<&str>, source: &Mutex<Source>) -> Result<(), String> {
    // A blast started with this command may not serve its page yet.
    let deadline = std::time::Instant::now() + CONNECT_FOR;
    let mut c = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() >= deadline => return Err(format!("cannot connect: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    c.set_read_timeout(Some(SILENT_FOR)).map_err(|e| e.to_string())?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(c, "GET /events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{auth}Connection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(c);
    let mut line = String::new();
    let status = read_line(&mut r, &mut line)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("not a live page's events: {}", status.trim_end()));
    }
    while !read_line(&mut r, &mut line)?.trim_end().is_empty() {}
    // Taken in with the next summary (see the module's note).
    let (mut hlog, mut points) = (String::new(), Vec::new());
    let (mut event, mut data) = (String::new(), String::new());
    loop {
        let l = read_line(&mut r, &mut line)?.trim_end_matches(['\r', '\n']).to_string();
        if let Some(e) = l.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = l.strip_prefix("data: ") {
            data = d.to_string();
        } else if l.is_empty() && !data.is_empty() {
            let v: Value = serde_json::from_str(&data).map_err(|e| format!("a frame that is not JSON: {e}"))?;
            data.clear();
            let mut s = source.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match event.as_str() {
                "interval" => {
                    hlog.push_str(v["hlog"].as_str().unwrap_or(""));
                    points.push(v["point"].clone());
                }
                "summary" => {
                    s.hlog.push_str(&std::mem::take(&mut hlog));
                    let mut so_far = v;
                    let series = s.summary.as_mut().and_then(|p| p["timeseries"].as_array_mut().map(std::mem::take));
                    let mut series = series.unwrap_or_default();
                    series.append(&mut points);
                    so_far["timeseries"] = Value::Array(series);
                    s.summary = Some(so_far);
                }
                "end" => {
                    s.hlog.push_str(&std::mem::take(&mut hlog));
                    s.summary = Some(v);
                    s.ended = true;
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

fn read_line<'a>(r: &mut BufReader<TcpStream>, line: &'a mut String) -> Result<&'a str, String> {
    line.clear();
    let n = std::io::Read::take(r, MAX_LINE as u64).read_line(line).map_err(|e| format!("reading the events: {e}"))?;
    if n == 0 {
        return Err("the blast closed its events".into());
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_page_addresses_are_followed() {
        assert!(address("http://127.0.0.1:5665/").is_ok());
        assert!(address("http://localhost:5665").is_ok());
        for bad in ["127.0.0.1:5665", "https://127.0.0.1:5665", "http://127.0.0.1:5665/run", "http://"] {
            assert!(matches!(address(bad), Err(FollowError::Url(_))), "{bad}");
        }
    }
}
