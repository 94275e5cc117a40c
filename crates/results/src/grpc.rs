//! gRPC figures of a blast (`grpc://`, `grpcs://`): every call's `grpc-status`, by code.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use engine_http::grpc::{code_name, GRPC_CODES};

/// A shard's calls of one interval by their `grpc-status` (the last index: any other code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grpc {
    pub codes: [u64; GRPC_CODES.len() + 1],
}

impl Grpc {
    pub fn count(&mut self, code: u32) {
        self.codes[(code as usize).min(GRPC_CODES.len())] += 1;
    }

    pub fn add(&mut self, o: &Grpc) {
        for (a, b) in self.codes.iter_mut().zip(o.codes) {
            *a += b;
        }
    }
}

/// The summary's `grpc`: the method called and every call's status by code name (the calls
/// that failed are the `grpc` errors).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcSummary {
    /// `pkg.Service/Method`.
    pub call: String,
    pub codes: BTreeMap<String, u64>,
}

impl GrpcSummary {
    pub fn new(call: &str, g: &Grpc) -> Self {
        let names = GRPC_CODES.iter().copied().chain(["OTHER"]);
        GrpcSummary {
            call: call.to_string(),
            codes: names.zip(g.codes).filter(|(_, n)| *n > 0).map(|(k, n)| (k.to_string(), n)).collect(),
        }
    }

    /// Adds another run's calls (merging a fleet).
    pub fn add(&mut self, o: &GrpcSummary) {
        for (k, n) in &o.codes {
            *self.codes.entry(k.clone()).or_default() += n;
        }
    }

    /// One line for the text summary: `gRPC demo.Echo/Echo: OK 900, UNAVAILABLE 100`.
    pub fn line(&self) -> String {
        let codes: Vec<String> = self.codes.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!("gRPC {}: {}", self.call, if codes.is_empty() { "no calls answered".into() } else { codes.join(", ") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_code_name() {
        let mut g = Grpc::default();
        g.count(0);
        g.count(14);
        g.count(99);
        let mut s = GrpcSummary::new("demo.Echo/Echo", &g);
        s.add(&s.clone());
        assert_eq!(s.codes.get("UNAVAILABLE"), Some(&2));
        assert_eq!(s.codes.get("OTHER"), Some(&2));
        assert_eq!(s.line(), "gRPC demo.Echo/Echo: OK 2, OTHER 2, UNAVAILABLE 2");
        assert_eq!(code_name(4), "DEADLINE_EXCEEDED");
    }
}
