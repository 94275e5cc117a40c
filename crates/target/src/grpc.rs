//! gRPC on the target (`--grpc`): every unary call is echoed (its message back, `grpc-status`
//! 0 in the trailers), and `--grpc-fail METHOD:CODE:EVERY` fails every EVERYth call of a
//! method with CODE (counted per shard), so a test knows exactly which calls failed.

use std::cell::Cell;

/// `--grpc-fail pkg.Service/Method:UNAVAILABLE:10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcFail {
    /// `/pkg.Service/Method`, as the request's path.
    pub path: String,
    pub code: u8,
    pub every: u64,
}

impl GrpcFail {
    pub fn parse(text: &str) -> Result<GrpcFail, String> {
        let bad = || {
            format!("--grpc-fail '{text}': expected pkg.Service/Method:CODE:EVERY, e.g. demo.Echo/Echo:UNAVAILABLE:10")
        };
        let mut it = text.rsplitn(3, ':');
        let (every, code, method) =
            (it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?, it.next().ok_or_else(bad)?);
        let every: u64 = every.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let code = engine_http::grpc::parse_code(code)?;
        if !method.trim_start_matches('/').contains('/') {
            return Err(bad());
        }
        Ok(GrpcFail { path: format!("/{}", method.trim_start_matches('/')), code, every })
    }
}

/// A shard's calls of each method a failure names, and the failures asked for.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    fail: Vec<(GrpcFail, Cell<u64>)>,
}

impl Calls {
    pub fn new(fail: Vec<GrpcFail>) -> Self {
        Calls { fail: fail.into_iter().map(|f| (f, Cell::new(0))).collect() }
    }

    /// The status the call to `path` ends with: 0, or a failure's code on its every Nth call.
    pub fn status(&self, path: &str) -> u8 {
        let Some((f, seen)) = self.fail.iter().find(|(f, _)| f.path == path) else { return 0 };
        seen.set(seen.get() + 1);
        if seen.get().is_multiple_of(f.every) {
            f.code
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_call_of_a_method_fails() {
        let f = GrpcFail::parse("demo.Echo/Fail:unavailable:3").unwrap();
        assert_eq!(f, GrpcFail { path: "/demo.Echo/Fail".into(), code: 14, every: 3 });
        let calls = Calls::new(vec![f]);
        let got: Vec<u8> = (0..6).map(|_| calls.status("/demo.Echo/Fail")).collect();
        assert_eq!(got, [0, 0, 14, 0, 0, 14]);
        assert_eq!(calls.status("/demo.Echo/Echo"), 0);
        for bad in ["demo.Echo/Fail:14", "demo.Echo/Fail:NOPE:3", "demo.Echo/Fail:14:0", "Echo:14:3"] {
            assert!(GrpcFail::parse(bad).is_err(), "{bad}");
        }
    }
}
