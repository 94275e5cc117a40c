//! A real headless Chromium driven through its DevTools protocol (a WebSocket, tungstenite):
//! open a page, run script in it (a click on a button, a read of what it shows) as a person
//! would act on it, without a driver binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::{Message, WebSocket};

pub struct Browser {
    child: Child,
    ws: WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    profile: PathBuf,
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(c, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

impl Browser {
    /// Chromium showing `url`, with a profile of its own under `scratch`.
    pub fn open(url: &str, scratch: &Path) -> Browser {
        let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromium not found: apt-get install -y chromium (.ci/run does)");
        let profile = scratch.join("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        let child = Command::new(bin)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium runs");
        // Chromium writes the port it chose to DevToolsActivePort in the profile.
        let deadline = Instant::now() + Duration::from_secs(20);
        let ws_url = loop {
            let port = std::fs::read_to_string(profile.join("DevToolsActivePort"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse::<u16>().ok());
            let page = port.and_then(|p| http_get(p, "/json/list")).and_then(|list| {
                let v: serde_json::Value = serde_json::from_str(&list).ok()?;
                v.as_array()?
                    .iter()
                    .find(|t| t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url)))
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from))
            });
            if let Some(ws) = page {
                break ws;
            }
            assert!(Instant::now() < deadline, "Chromium did not open {url}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (ws, _) = tungstenite::connect(ws_url).expect("DevTools connects");
        Browser { child, ws, next: 1, profile }
    }

    /// The value of `expression` in the page (a promise is awaited).
    pub fn eval(&mut self, expression: &str) -> serde_json::Value {
        let id = self.next;
        self.next += 1;
        let call = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true, "awaitPromise": true },
        });
        self.ws.send(Message::text(call.to_string())).expect("DevTools takes the call");
        loop {
            let msg = self.ws.read().expect("DevTools answers");
            let Message::Text(text) = msg else { continue };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v["result"]["exceptionDetails"].is_null(), "{expression}: {v}");
                return v["result"]["result"]["value"].clone();
            }
        }
    }

    /// Waits until `expression` is true in the page.
    pub fn wait_for(&mut self, expression: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.eval(expression) != serde_json::Value::Bool(true) {
            assert!(Instant::now() < deadline, "never true: {expression}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
