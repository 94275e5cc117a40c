//! gRPC unary calls (`grpc://`, `grpcs://`): the method (`--call pkg.Service/Method`), its
//! message from JSON by the service's own `.proto` (`--proto`, parsed at run time by `protox`,
//! the JSON read by `prost-reflect`) or already encoded (`--data-bin`), framed once as gRPC's
//! length-prefixed message (RFC-less, the gRPC over HTTP/2 spec), and the statuses that are
//! not failures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};

use super::PlanError;

pub use engine_http::grpc::{parse_code, parse_codes};

/// The largest message `--data`/`--data-bin` may make (gRPC's default receive limit).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// The flags as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcInput {
    /// `pkg.Service/Method`.
    pub call: Option<String>,
    pub proto: Option<PathBuf>,
    /// The request message as JSON (proto3's JSON mapping).
    pub data: Option<String>,
    /// The request message already encoded.
    pub data_bin: Option<PathBuf>,
    /// Sent as `grpc-timeout`: the server may give up on the call after it.
    pub deadline: Option<Duration>,
    /// Codes that are not failures (default: OK only).
    pub expect: Option<Vec<u8>>,
}

/// A gRPC run's call, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcPlan {
    /// `pkg.Service/Method`.
    pub call: String,
    /// The length-prefixed message: the request's body.
    pub body: Vec<u8>,
    /// Codes that are not failures (a bit per code).
    pub expect: u32,
    pub deadline: Option<Duration>,
}

impl GrpcPlan {
    /// Whether a call that ended with `code` succeeded.
    pub fn expects(&self, code: u8) -> bool {
        code < 32 && self.expect & (1 << code) != 0
    }

    /// The headers of every call (beside `content-type`).
    pub fn headers(&self) -> Vec<String> {
        let mut h = vec!["Content-Type: application/grpc".to_string(), "TE: trailers".to_string()];
        if let Some(d) = self.deadline {
            // At most 8 digits (the spec): milliseconds, or seconds when longer.
            let ms = d.as_millis().max(1);
            h.push(if ms < 100_000_000 {
                format!("grpc-timeout: {ms}m")
            } else {
                format!("grpc-timeout: {}S", d.as_secs())
            });
        }
        h
    }
}

impl GrpcInput {
    /// Validates the call and encodes its message; `None` when the URL is not gRPC's.
    pub(super) fn plan(&self, grpc_url: bool) -> Result<Option<GrpcPlan>, PlanError> {
        let bad = |reason: String| Err(PlanError::Grpc(reason));
        let given = self.call.is_some()
            || self.proto.is_some()
            || self.data.is_some()
            || self.data_bin.is_some()
            || self.deadline.is_some()
            || self.expect.is_some();
        if !grpc_url {
            return if given {
                bad("--call, --proto, --data, --data-bin, --grpc-deadline and --expect-grpc-status are for grpc:// and grpcs:// URLs".into())
            } else {
                Ok(None)
            };
        }
        let Some(call) = self.call.clone() else {
            return bad("a grpc:// URL needs --call pkg.Service/Method".into());
        };
        let Some((service, method)) = call.trim_start_matches('/').split_once('/') else {
            return bad(format!("--call '{call}': expected pkg.Service/Method"));
        };
        let message = match (&self.proto, &self.data, &self.data_bin) {
            (_, Some(_), Some(_)) => {
                return bad("--data and --data-bin are two ways to give one message: pick one".into())
            }
            (_, None, Some(file)) => engine_util::files::read_limited(file, MAX_MESSAGE as u64)
                .map_err(|e| PlanError::Grpc(format!("--data-bin {}: {e}", file.display())))?,
            (Some(proto), data, None) => encode(proto, service, method, data.as_deref().unwrap_or("{}"))?,
            (None, Some(_), None) => {
                return bad("--data is JSON for the method's input message: give its --proto".into())
            }
            // No message at all: the empty one (every field at its default).
            (None, None, None) => Vec::new(),
        };
        if message.len() > MAX_MESSAGE {
            return bad(format!("the message is {} bytes, over gRPC's default limit of {MAX_MESSAGE}", message.len()));
        }
        let mut body = Vec::with_capacity(5 + message.len());
        body.push(0); // not compressed
        body.extend_from_slice(&(message.len() as u32).to_be_bytes());
        body.extend_from_slice(&message);
        let expect = self.expect.clone().unwrap_or_else(|| vec![0]).iter().fold(0u32, |m, c| m | 1 << c);
        Ok(Some(GrpcPlan { call: format!("{service}/{method}"), body, expect, deadline: self.deadline }))
    }
}

/// The method's input message from `json`, by the service in `proto` (and what it imports,
/// from its directory).
fn encode(proto: &Path, service: &str, method: &str, json: &str) -> Result<Vec<u8>, PlanError> {
    let bad = |reason: String| PlanError::Grpc(reason);
    let dir = proto.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let pool: DescriptorPool = protox::Compiler::new([dir])
        .and_then(|mut c| {
            c.include_imports(true).open_file(proto)?;
            Ok(c.descriptor_pool())
        })
        .map_err(|e| bad(format!("--proto {}: {e}", proto.display())))?;
    let svc = pool.get_service_by_name(service).ok_or_else(|| {
        let known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        bad(format!("--call: no service '{service}' in {} (it has: {})", proto.display(), known.join(", ")))
    })?;
    let m = svc.methods().find(|m| m.name() == method).ok_or_else(|| {
        let known: Vec<String> = svc.methods().map(|m| m.name().to_string()).collect();
        bad(format!("--call: {service} has no method '{method}' (it has: {})", known.join(", ")))
    })?;
    if m.is_client_streaming() || m.is_server_streaming() {
        return Err(bad(format!("--call {service}/{method} streams; the blast makes unary calls")));
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize(m.input(), &mut de)
        .map_err(|e| bad(format!("--data is not a {}: {e}", m.input().full_name())))?;
    de.end().map_err(|e| bad(format!("--data: {e}")))?;
    Ok(msg.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("engine-grpc-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("echo.proto");
        std::fs::write(
            &p,
            "syntax = \"proto3\";\npackage demo;\nmessage Say { string text = 1; int32 times = 2; }\n\
             service Echo { rpc Echo (Say) returns (Say); rpc Chat (stream Say) returns (stream Say); }\n",
        )
        .unwrap();
        p
    }

    #[test]
    fn a_call_encodes_its_json_by_the_proto_and_frames_it() {
        let input = GrpcInput {
            call: Some("demo.Echo/Echo".into()),
            proto: Some(proto()),
            data: Some(r#"{"text":"hi","times":3}"#.into()),
            expect: Some(vec![0, 5]),
            deadline: Some(Duration::from_millis(250)),
            ..Default::default()
        };
        let p = input.plan(true).unwrap().unwrap();
        // Field 1 (string "hi"), field 2 (varint 3), behind the 5-byte prefix.
        assert_eq!(p.body, [0, 0, 0, 0, 6, 0x0a, 2, b'h', b'i', 0x10, 3]);
        assert!(p.expects(0) && p.expects(5) && !p.expects(14));
        assert!(p.headers().contains(&"grpc-timeout: 250m".to_string()));
        assert!(input.plan(false).unwrap_err().to_string().contains("grpc://"));
    }

    #[test]
    fn what_cannot_be_called_is_refused_with_a_reason() {
        let with = |call: &str, data: &str| GrpcInput {
            call: Some(call.into()),
            proto: Some(proto()),
            data: Some(data.into()),
            ..Default::default()
        };
        for (input, want) in [
            (with("demo.Nope/Echo", "{}"), "no service 'demo.Nope'"),
            (with("demo.Echo/Nope", "{}"), "has no method 'Nope' (it has: Echo, Chat)"),
            (with("demo.Echo/Chat", "{}"), "streams"),
            (with("demo.Echo/Echo", r#"{"nope":1}"#), "is not a demo.Say"),
            (with("demo.Echo", "{}"), "expected pkg.Service/Method"),
            (GrpcInput::default(), "needs --call"),
        ] {
            let e = input.plan(true).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
