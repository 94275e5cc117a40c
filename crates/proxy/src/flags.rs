//! The proxy's options as a user gives them, and the rules that make a [`ProxyConfig`] of
//! them: the upstream and its TLS, the admin API's address and token (checked against the
//! listener), the faults file, routes, upgrades, the limits. The command line fills a
//! [`ProxyFlags`] and calls [`ProxyFlags::config`]: it holds no rule of its own.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine_runtime::executor::MAX_BUSY_POLL;

use crate::{Limits, ProxyConfig, Rule, ServerTls, UpstreamProtocol};

/// Client connections at once when no limit is given and the open-files limit allows.
pub const DEFAULT_MAX_CONNS: u64 = 10_000;

/// A proxy's options.
#[derive(Debug, Clone)]
pub struct ProxyFlags {
    pub listen: SocketAddr,
    /// `HOST:PORT`, `http://HOST:PORT` or `https://HOST[:PORT]`.
    pub upstream: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
    pub upstream_servername: Option<String>,
    pub upstream_insecure: bool,
    /// `IP:PORT`, or `off`.
    pub admin: String,
    pub admin_token_file: Option<PathBuf>,
    pub faults: Option<PathBuf>,
    pub routes: Vec<String>,
    pub shards: Option<usize>,
    pub max_conns: Option<u64>,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub drain_timeout: Duration,
    pub busy_poll: Duration,
    /// Protocol names, comma-separated, or `none`.
    pub upgrade: String,
    pub fault_headers: bool,
    pub forward_expect: bool,
    /// At most this many requests under a fault at once (0: no cap).
    pub max_active_faults: u64,
    /// TCP mode: bytes passed untouched, rules act on connections.
    pub tcp: bool,
    /// `auto`, `h1`, `h2` (over TLS, by ALPN) or `h2c` (plain, by prior knowledge).
    pub upstream_protocol: String,
}

/// Why the options make no proxy: one line naming the option and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    /// What was being done, and why it failed.
    #[error("{what}: {why}")]
    Failed { what: String, why: String },
}

fn invalid(text: String) -> ConfigError {
    ConfigError::Invalid(text)
}

fn failed(what: impl Into<String>, why: impl std::fmt::Display) -> ConfigError {
    ConfigError::Failed { what: what.into(), why: why.to_string() }
}

impl ProxyFlags {
    /// The proxy's configuration, every option checked.
    pub fn config(&self) -> Result<ProxyConfig, ConfigError> {
        if self.tcp {
            self.tcp_only()?;
        }
        let (upstream, upstream_tls) = self.upstream()?;
        let upstream_tls_given = upstream_tls.is_some();
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(ServerTls::from_files(cert.clone(), key.clone()).map_err(|e| failed("--tls-cert/--tls-key", e))?)
            }
            _ => None,
        };
        let cpus = engine_runtime::affinity::allowed_cpus().map_err(|e| failed("cannot read CPU affinity", e))?;
        let shards = engine_runtime::affinity::shard_count(self.shards, &cpus).map_err(|e| invalid(e.to_string()))?;
        let (admin, admin_token) = self.admin()?;
        let faults = match &self.faults {
            None => Vec::new(),
            Some(path) => faults_file(path, shards)?,
        };
        for (i, r) in self.routes.iter().enumerate() {
            if !r.starts_with('/') {
                return Err(invalid(format!("--route {r:?} must start with /")));
            }
            if self.routes[..i].contains(r) {
                return Err(invalid(format!("--route {r:?} is given twice")));
            }
        }
        let limits = self.limits(shards)?;
        if self.busy_poll > MAX_BUSY_POLL {
            return Err(invalid(format!(
                "--busy-poll {:?} is over {MAX_BUSY_POLL:?}: a shard would poll for that long between requests; \
                 100us..1ms covers the gaps of light traffic",
                self.busy_poll
            )));
        }
        Ok(ProxyConfig {
            listen: self.listen,
            upstream,
            admin,
            admin_token,
            faults,
            routes: self.routes.clone(),
            shard_cpus: engine_runtime::affinity::spread(shards, &cpus),
            limits,
            busy_poll: Some(self.busy_poll).filter(|d| !d.is_zero()),
            tls,
            upstream_tls,
            upgrades: upgrades(&self.upgrade)?,
            fault_headers: self.fault_headers,
            forward_expect: self.forward_expect,
            max_active_faults: self.max_active_faults,
            tcp: self.tcp,
            upstream_protocol: self.upstream_protocol(upstream_tls_given)?,
        })
    }

    /// `--upstream-protocol`, checked against the upstream's scheme and `--tcp`.
    fn upstream_protocol(&self, tls: bool) -> Result<UpstreamProtocol, ConfigError> {
        let p = self.upstream_protocol.trim().to_ascii_lowercase();
        if self.tcp && p != "auto" {
            return Err(invalid("--upstream-protocol is for HTTP; --tcp passes bytes untouched".into()));
        }
        match (p.as_str(), tls) {
            ("auto", _) => Ok(UpstreamProtocol::Auto),
            ("h1" | "http/1.1", _) => Ok(UpstreamProtocol::Http1),
            ("h2", true) | ("h2c", false) => Ok(UpstreamProtocol::Http2),
            ("h2", false) => Err(invalid(format!(
                "--upstream-protocol h2 is HTTP/2 over TLS (ALPN); --upstream {} is plain: give https://..., \
                 or h2c for HTTP/2 by prior knowledge",
                self.upstream
            ))),
            ("h2c", true) => Err(invalid(format!(
                "--upstream-protocol h2c is HTTP/2 without TLS; --upstream {} is https://: give h2",
                self.upstream
            ))),
            (other, _) => Err(invalid(format!("--upstream-protocol {other:?}: give auto, h1, h2 (over TLS) or h2c"))),
        }
    }

    /// `--tcp` passes bytes untouched: the options that speak HTTP or TLS do not go with it.
    fn tcp_only(&self) -> Result<(), ConfigError> {
        if self.upstream.contains("://") {
            return Err(invalid(format!(
                "--tcp passes bytes untouched: give --upstream HOST:PORT, not {} (TLS passes through as it is)",
                self.upstream
            )));
        }
        for (given, flag) in [
            (self.tls_cert.is_some() || self.tls_key.is_some(), "--tls-cert/--tls-key"),
            (self.fault_headers, "--fault-headers"),
            (self.forward_expect, "--forward-expect"),
            (!self.routes.is_empty(), "--route"),
        ] {
            if given {
                return Err(invalid(format!("{flag} is for HTTP; --tcp passes bytes untouched")));
            }
        }
        Ok(())
    }

    /// The upstream's address and, for https://, the TLS client that verifies it.
    fn upstream(&self) -> Result<(SocketAddr, Option<engine_tls::Client>), ConfigError> {
        let https = self.upstream.strip_prefix("https://");
        let Some(https) = https else {
            for (given, flag) in [
                (self.upstream_ca.is_some(), "--upstream-ca"),
                (self.upstream_servername.is_some(), "--upstream-servername"),
                (self.upstream_insecure, "--upstream-insecure"),
            ] {
                if given {
                    return Err(invalid(format!(
                        "{flag} is for an https:// upstream; --upstream {} is plain HTTP",
                        self.upstream
                    )));
                }
            }
            return Ok((resolve(&self.upstream)?, None));
        };
        let hostport = https.trim_end_matches('/');
        let host = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => hostport,
        };
        let with_port = if host == hostport { format!("{hostport}:443") } else { hostport.to_string() };
        let addr = resolve(&with_port).map_err(|e| failed(format!("--upstream {}", self.upstream), e))?;
        let opts = engine_tls::ClientOptions {
            cacert: self.upstream_ca.clone(),
            insecure: self.upstream_insecure,
            servername: self.upstream_servername.clone(),
            ..Default::default()
        };
        let client = engine_tls::Client::new(&opts, host).map_err(|e| failed("--upstream TLS", e))?;
        Ok((addr, Some(client)))
    }

    /// The admin API's address (`off`: none) and its token, checked against the listener.
    fn admin(&self) -> Result<(Option<SocketAddr>, Option<String>), ConfigError> {
        let admin = match self.admin.as_str() {
            "off" | "none" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| invalid(format!("--admin {a:?} is not an IP:PORT address (or `off`)")))?,
            ),
        };
        let token = match &self.admin_token_file {
            None => None,
            Some(path) => {
                let t = engine_util::files::read_limited_string(path, 4096)
                    .map_err(|e| failed(format!("cannot read {}", path.display()), e))?;
                let t = t.trim().to_string();
                if t.len() < 16 {
                    return Err(invalid(format!(
                        "the admin token in {} is shorter than 16 characters",
                        path.display()
                    )));
                }
                Some(t)
            }
        };
        if let Some(a) = admin {
            let l = self.listen;
            // Both listeners set SO_REUSEPORT, so one port would split clients between them.
            if a.port() != 0
                && a.port() == l.port()
                && (a.ip() == l.ip() || a.ip().is_unspecified() || l.ip().is_unspecified())
            {
                return Err(invalid(format!(
                    "--admin {a} overlaps --listen {l}: the admin API needs a port of its own (or --admin off)"
                )));
            }
            if !a.ip().is_loopback() && token.is_none() {
                return Err(invalid(format!(
                    "--admin {a} is not a loopback address: the admin API changes live traffic, so it needs \
                     --admin-token-file there"
                )));
            }
        }
        Ok((admin, token))
    }

    /// Timeouts and the connection limit (by default what the open-files limit holds).
    fn limits(&self, shards: usize) -> Result<Limits, ConfigError> {
        let (_, hard) = engine_runtime::limits::nofile().map_err(|e| failed("cannot read the open-files limit", e))?;
        let max_conns = match self.max_conns {
            Some(0) => return Err(invalid("--max-conns must be at least 1".into())),
            Some(n) => n,
            None => DEFAULT_MAX_CONNS.min(crate::limits::conns_budget(shards as u64, hard)).max(1),
        };
        crate::limits::check(max_conns, shards as u64, hard).map_err(|e| invalid(e.to_string()))?;
        for (flag, d) in [
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--upstream-timeout", self.upstream_timeout),
            ("--connect-timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(format!("{flag} must be above zero")));
            }
        }
        Ok(Limits {
            max_conns,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            upstream_timeout: self.upstream_timeout,
            connect_timeout: self.connect_timeout,
            drain_timeout: self.drain_timeout,
        })
    }
}

/// The protocol names of `--upgrade`, lower case (`none`: no upgrade).
fn upgrades(list: &str) -> Result<Vec<String>, ConfigError> {
    if list.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for name in list.split(',').map(str::trim) {
        // A protocol name is an HTTP token (RFC 9110 §5.6.2); its version is the client's to offer.
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(tchar) {
            return Err(invalid(format!(
                "--upgrade {list:?}: {name:?} is not a protocol name (like websocket); list them comma-separated, or \
                 `none`"
            )));
        }
        if name.eq_ignore_ascii_case("h2c") {
            return Err(invalid(
                "--upgrade h2c: the proxy forwards HTTP/1.1; an h2c tunnel would carry requests it never reads, past \
                 its faults and figures"
                    .into(),
            ));
        }
        names.push(name.to_ascii_lowercase());
    }
    Ok(names)
}

/// The rules of a faults file, each valid for `shards` shards, ids unique.
fn faults_file(path: &Path, shards: usize) -> Result<Vec<Rule>, ConfigError> {
    let name = path.display().to_string();
    let text = engine_util::files::read_limited_string(path, crate::faults::MAX_FILE)
        .map_err(|e| failed(format!("cannot read {name}"), e))?;
    let rules = crate::faults::parse_faults_file(&text).map_err(|e| failed(name.clone(), e))?;
    for (i, r) in rules.iter().enumerate() {
        r.validate(shards).map_err(|e| failed(name.clone(), e))?;
        if let Some(id) = r.id.as_deref().filter(|id| rules[..i].iter().any(|o| o.id.as_deref() == Some(id))) {
            return Err(invalid(format!(
                "{name}: two faults have id {id:?}; ids name rules for the admin API, so each must be unique"
            )));
        }
    }
    Ok(rules)
}

/// `HOST:PORT` or `http://HOST:PORT[/]` to one socket address.
fn resolve(upstream: &str) -> Result<SocketAddr, ConfigError> {
    let hostport = upstream.strip_prefix("http://").unwrap_or(upstream).trim_end_matches('/');
    if hostport.contains('/') {
        return Err(invalid(format!("--upstream {upstream}: give HOST:PORT only; paths are the client's")));
    }
    hostport
        .to_socket_addrs()
        .map_err(|e| failed(format!("--upstream {upstream:?} is not a HOST:PORT that resolves"), e))?
        .next()
        .ok_or_else(|| invalid(format!("--upstream {upstream}: the name resolved to no address")))
}
