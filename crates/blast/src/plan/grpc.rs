//! gRPC unary calls (`grpc://`, `grpcs://`): the method (`--call pkg.Service/Method`), its
//! message from JSON by the service's own `.proto` (`--proto`, parsed at run time by `protox`,
//! the JSON read by `prost-reflect`) or already encoded (`--data-bin`), framed once as gRPC's
//! length-prefixed message (RFC-less, the gRPC over HTTP/2 spec), and the statuses that are
//! not failures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::PlanError;
use crate::render::{BodyEncoder, Encoder};

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
    /// `--data` with templates: `body` is the JSON, rendered and encoded per call by this.
    pub encoder: Option<Encoder>,
}

/// A method's input message from JSON, framed as gRPC's length-prefixed message.
#[derive(Debug)]
struct JsonMessage(MessageDescriptor);

impl BodyEncoder for JsonMessage {
    fn encode(&self, rendered: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let json = std::str::from_utf8(rendered).map_err(|e| e.to_string())?;
        let message = from_json(&self.0, json)?;
        frame(&message, out);
        Ok(())
    }
}

/// The message `json` describes, encoded.
fn from_json(input: &MessageDescriptor, json: &str) -> Result<Vec<u8>, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize(input.clone(), &mut de)
        .map_err(|e| format!("is not a {}: {e}", input.full_name()))?;
    de.end().map_err(|e| format!("has more after the message: {e}"))?;
    Ok(msg.encode_to_vec())
}

/// Appends `message` as gRPC's length-prefixed message (not compressed).
fn frame(message: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
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
        let templated = self.data.as_deref().is_some_and(|d| d.contains("{{"));
        let mut encoder = None;
        let message = match (&self.proto, &self.data, &self.data_bin) {
            (_, Some(_), Some(_)) => {
                return bad("--data and --data-bin are two ways to give one message: pick one".into())
            }
            (_, None, Some(file)) => engine_util::files::read_limited(file, MAX_MESSAGE as u64)
                .map_err(|e| PlanError::Grpc(format!("--data-bin {}: {e}", file.display())))?,
            (Some(proto), data, None) => {
                let input = method_input(proto, service, method)?;
                let json = data.as_deref().unwrap_or("{}");
                if templated {
                    // Checked with every template as 0 (in a string or as a number, it leaves the
                    // JSON whole); each call renders and encodes its own.
                    from_json(&input, &untemplated(json)).map_err(|e| PlanError::Grpc(format!("--data {e}")))?;
                    encoder = Some(Encoder(Arc::new(JsonMessage(input))));
                    json.as_bytes().to_vec()
                } else {
                    from_json(&input, json).map_err(|e| PlanError::Grpc(format!("--data {e}")))?
                }
            }
            (None, Some(_), None) => {
                return bad("--data is JSON for the method's input message: give its --proto".into())
            }
            // No message at all: the empty one (every field at its default).
            (None, None, None) => Vec::new(),
        };
        if message.len() > MAX_MESSAGE {
            return bad(format!("the message is {} bytes, over gRPC's default limit of {MAX_MESSAGE}", message.len()));
        }
        let body = if encoder.is_some() {
            message
        } else {
            let mut body = Vec::with_capacity(5 + message.len());
            frame(&message, &mut body);
            body
        };
        let expect = self.expect.clone().unwrap_or_else(|| vec![0]).iter().fold(0u32, |m, c| m | 1 << c);
        Ok(Some(GrpcPlan { call: format!("{service}/{method}"), body, expect, deadline: self.deadline, encoder }))
    }
}

/// `json` with every `{{...}}` as 0.
fn untemplated(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        match rest[open..].find("}}") {
            Some(close) => {
                out.push('0');
                rest = &rest[open + close + 2..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The method's input message, by the service in `proto` (and what it imports, from its
/// directory).
fn method_input(proto: &Path, service: &str, method: &str) -> Result<MessageDescriptor, PlanError> {
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
    Ok(m.input())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A proto file of its own for each test (they run at once).
    fn proto() -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("engine-grpc-plan-{}-{n}", std::process::id()));
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
    fn templated_json_is_checked_now_and_encoded_per_call() {
        let input = |data: &str| GrpcInput {
            call: Some("demo.Echo/Echo".into()),
            proto: Some(proto()),
            data: Some(data.into()),
            ..Default::default()
        };
        let p = input(r#"{"text":"u{{seq}}","times":{{rand_int:1:9}}}"#).plan(true).unwrap().unwrap();
        assert_eq!(p.body, br#"{"text":"u{{seq}}","times":{{rand_int:1:9}}}"#);
        let enc = p.encoder.expect("an encoder for the rendered JSON");
        let mut out = Vec::new();
        enc.0.encode(br#"{"text":"u7","times":3}"#, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 6, 0x0a, 2, b'u', b'7', 0x10, 3]);
        assert!(enc.0.encode(br#"{"text":"#, &mut out).is_err());
        // Every template as 0 must leave the message whole.
        let e = input(r#"{"text": {{seq}}}"#).plan(true).unwrap_err().to_string();
        assert!(e.contains("is not a demo.Say"), "{e}");
        assert_eq!(untemplated(r#"{"a":"x{{seq}}y","b":{{rand_int:1:2}},"c":"{{"}"#), r#"{"a":"x0y","b":0,"c":"{{"}"#);
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
