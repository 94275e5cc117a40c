//! Checks on responses, k6's `check()` and Gatling's `check` as the anchors:
//! `status == 200`, `header content-type ~ json`, `body contains "ok"`,
//! `json $.items[0].id exists`, `json $.cached == true`. Parsed once with the plan, evaluated
//! on every complete response of the request that carries them, and counted pass/fail by
//! name. A request without checks keeps nothing of its response and evaluates nothing.
//!
//! JSONPath is RFC 9535's (`serde_json_path`); a path that selects several nodes is compared
//! by its first. `~` is a regular expression (`regex`), searched anywhere in the value.

use std::fmt;

use engine_http::response::{Capture, MAX_CAPTURED_BODY};
use regex::bytes::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

/// A check as written: the expression, its name (default: the expression), and whether a
/// failure is only counted (`soft`) rather than failing the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub name: Option<String>,
    pub expr: String,
    pub soft: bool,
}

impl CheckSpec {
    /// A hard check named by its expression.
    pub fn new(expr: impl Into<String>) -> Self {
        CheckSpec { name: None, expr: expr.into(), soft: false }
    }

    /// A hard check from its expression, refused at once if it does not parse (`--check`).
    pub fn parse(expr: &str) -> Result<Self, String> {
        Test::parse(expr).map(|_| CheckSpec::new(expr.trim()))
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.expr)
    }
}

/// A parsed check of a planned request.
#[derive(Debug, Clone)]
pub struct Check {
    /// Index into the plan's check names.
    pub name: usize,
    pub soft: bool,
    pub test: Test,
    text: String,
}

impl PartialEq for Check {
    fn eq(&self, o: &Self) -> bool {
        (self.name, self.soft, &self.text) == (o.name, o.soft, &o.text)
    }
}

impl Eq for Check {}

impl Check {
    pub fn parse(spec: &CheckSpec, name: usize) -> Result<Check, String> {
        Ok(Check { name, soft: spec.soft, test: Test::parse(&spec.expr)?, text: spec.expr.trim().to_string() })
    }
}

/// What a check looks at, and the condition.
#[derive(Debug, Clone)]
pub enum Test {
    Status(Cmp, u16),
    /// A header (lower-case name) and a condition on its value.
    Header(String, Text),
    Body(Text),
    Json(Box<JsonPath>, JsonTest),
}

/// A condition on bytes (a header's value, the body).
#[derive(Debug, Clone)]
pub enum Text {
    Exists,
    Missing,
    Eq(Vec<u8>),
    Ne(Vec<u8>),
    Contains(Vec<u8>),
    NotContains(Vec<u8>),
    Matches(Regex),
    NotMatches(Regex),
}

/// A condition on the node a JSONPath selects.
#[derive(Debug, Clone)]
pub enum JsonTest {
    Exists,
    Missing,
    /// `==` and `!=` compare JSON values (`1` equals `1.0`); the orderings compare numbers.
    Cmp(Cmp, Value),
    Matches(Regex),
    NotMatches(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn parse(op: &str) -> Option<Cmp> {
        Some(match op {
            "==" => Cmp::Eq,
            "!=" => Cmp::Ne,
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            _ => return None,
        })
    }

    fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

const EXAMPLES: &str = "status == 200, header content-type ~ json, body contains \"ok\", json $.items[0].id exists, \
                        json $.cached == true";

impl Test {
    /// Parses `status OP N`, `header NAME (exists|missing|OP "text")`, `body OP "text"`,
    /// `json PATH (exists|missing|OP VALUE)`; OP is `==`, `!=`, `contains`, `!contains`, `~`,
    /// `!~` (and for status and JSON numbers `<`, `<=`, `>`, `>=`).
    pub fn parse(text: &str) -> Result<Test, String> {
        let bad = |why: String| format!("invalid check '{}': {why} (examples: {EXAMPLES})", text.trim());
        let words = split(text).map_err(&bad)?;
        let word = |i: usize| words.get(i).map(String::as_str);
        let rest_is_one = |from: usize| match words.len() {
            n if n == from + 1 => Ok(()),
            n if n <= from => Err(bad("a value is missing at the end".into())),
            _ => Err(bad(format!("'{}' is left over; quote a value with spaces", words[from + 1..].join(" ")))),
        };
        match word(0) {
            Some("status") => {
                let op =
                    word(1).and_then(Cmp::parse).ok_or_else(|| bad("status takes ==, !=, <, <=, > or >=".into()))?;
                rest_is_one(2)?;
                let code = words[2].parse::<u16>().ok().filter(|c| (100..=999).contains(c));
                Ok(Test::Status(op, code.ok_or_else(|| bad(format!("'{}' is not a status code", words[2])))?))
            }
            Some("header") => {
                let name = word(1).filter(|n| !n.is_empty() && n.bytes().all(is_token));
                let name = name.ok_or_else(|| bad("header takes a field name".into()))?.to_ascii_lowercase();
                let t = match word(2) {
                    Some("exists") | Some("missing") => {
                        if words.len() > 3 {
                            return Err(bad(format!("'{}' is left over", words[3..].join(" "))));
                        }
                        if words[2] == "exists" {
                            Text::Exists
                        } else {
                            Text::Missing
                        }
                    }
                    _ => text_test(&words, 2).map_err(&bad)?,
                };
                Ok(Test::Header(name, t))
            }
            Some("body") => Ok(Test::Body(text_test(&words, 1).map_err(&bad)?)),
            Some("json") => {
                let path = word(1).ok_or_else(|| bad("json takes a JSONPath such as $.items[0].id".into()))?;
                let path = JsonPath::parse(path).map_err(|e| bad(format!("JSONPath '{path}': {e}")))?;
                let t = match word(2) {
                    Some("exists") if words.len() == 3 => JsonTest::Exists,
                    Some("missing") if words.len() == 3 => JsonTest::Missing,
                    Some(op @ ("~" | "!~")) => {
                        rest_is_one(3)?;
                        let re = regex(&words[3]).map_err(&bad)?;
                        if op == "~" {
                            JsonTest::Matches(re)
                        } else {
                            JsonTest::NotMatches(re)
                        }
                    }
                    Some(op) => {
                        let op = Cmp::parse(op).ok_or_else(|| {
                            bad(format!("'{op}': json takes exists, missing, ==, !=, <, <=, >, >=, ~ or !~"))
                        })?;
                        rest_is_one(3)?;
                        let value: Value = serde_json::from_str(&words[3]).map_err(|_| {
                            bad(format!("'{}' is not a JSON value (true, 42, \"text\", null)", words[3]))
                        })?;
                        if !matches!(op, Cmp::Eq | Cmp::Ne) && !value.is_number() {
                            return Err(bad("<, <=, > and >= compare numbers".into()));
                        }
                        JsonTest::Cmp(op, value)
                    }
                    None => return Err(bad("json PATH takes exists, missing or a comparison".into())),
                };
                Ok(Test::Json(Box::new(path), t))
            }
            Some(other) => Err(bad(format!("'{other}': a check is on status, header, body or json"))),
            None => Err(bad("it is empty".into())),
        }
    }

    /// What of the response the test needs kept: a header name, the body.
    pub fn needs(&self) -> (Option<&str>, bool) {
        match self {
            Test::Status(..) => (None, false),
            Test::Header(name, _) => (Some(name), false),
            Test::Body(_) | Test::Json(..) => (None, true),
        }
    }
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `OP "text"` from `words[at]` on, for a header's value or the body.
fn text_test(words: &[String], at: usize) -> Result<Text, String> {
    let ops = "==, !=, contains, !contains, ~ or !~";
    let op = words.get(at).ok_or_else(|| format!("a condition is missing: {ops}"))?;
    let value = match words.len() {
        n if n == at + 2 => words[at + 1].clone(),
        n if n <= at + 1 => return Err(format!("'{op}' takes a value")),
        _ => return Err(format!("'{}' is left over; quote a value with spaces", words[at + 2..].join(" "))),
    };
    Ok(match op.as_str() {
        "==" => Text::Eq(value.into_bytes()),
        "!=" => Text::Ne(value.into_bytes()),
        "contains" => Text::Contains(value.into_bytes()),
        "!contains" => Text::NotContains(value.into_bytes()),
        "~" => Text::Matches(regex(&value)?),
        "!~" => Text::NotMatches(regex(&value)?),
        other => return Err(format!("'{other}': the condition is {ops}")),
    })
}

fn regex(pattern: &str) -> Result<Regex, String> {
    // A bounded compiled size: a check is a line of a plan, not a program.
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("regular expression '{pattern}': {e}"))
}

/// Splits a check into words; a double-quoted word may hold spaces and `\"`, and a JSONPath's
/// brackets and quotes stay in one word.
fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words: Vec<String> = Vec::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => match chars.next() {
                        Some(e @ ('"' | '\\')) => w.push(e),
                        Some(e) => {
                            w.push('\\');
                            w.push(e);
                        }
                        None => return Err("a quoted value is not closed".into()),
                    },
                    Some('"') => break,
                    Some(ch) => w.push(ch),
                    None => return Err("a quoted value is not closed".into()),
                }
            }
            // A quoted JSON string stays a JSON string: `json $.a == "x"`.
            if words.len() == 3 && words[0] == "json" && !matches!(words[2].as_str(), "~" | "!~") {
                w = serde_json::to_string(&w).unwrap_or_default();
            }
        } else {
            let (mut depth, mut quoted) = (0i32, None::<char>);
            while let Some(&ch) = chars.peek() {
                match (quoted, ch) {
                    (None, ch) if ch.is_whitespace() && depth == 0 => break,
                    (None, '[') => depth += 1,
                    (None, ']') => depth -= 1,
                    (None, '\'' | '"') if depth > 0 => quoted = Some(ch),
                    (Some(q), ch) if ch == q => quoted = None,
                    _ => {}
                }
                w.push(ch);
                chars.next();
            }
        }
        words.push(w);
    }
    Ok(words)
}

/// A response as the checks see it: its status and what was kept of it. The body is
/// de-chunked and parsed as JSON once, when a check first needs it.
pub struct Seen<'a> {
    status: u16,
    kept: Option<&'a Capture>,
    body: Option<Option<std::borrow::Cow<'a, [u8]>>>,
    json: Option<Option<Value>>,
}

impl<'a> Seen<'a> {
    pub fn new(status: u16, kept: Option<&'a Capture>) -> Self {
        Seen { status, kept, body: None, json: None }
    }

    /// The body as sent (chunk framing removed); `None` when it was not kept or did not
    /// de-chunk.
    pub fn body(&mut self) -> Option<&[u8]> {
        let kept = self.kept;
        self.body
            .get_or_insert_with(|| {
                let c = kept.filter(|c| c.body)?;
                if c.chunked {
                    engine_http::body::dechunk(&c.body_bytes).ok().map(std::borrow::Cow::Owned)
                } else {
                    Some(std::borrow::Cow::Borrowed(c.body_bytes.as_slice()))
                }
            })
            .as_deref()
    }

    /// The body as JSON; `None` when it is not JSON, or was cut at [`MAX_CAPTURED_BODY`].
    pub fn json(&mut self) -> Option<&Value> {
        if self.json.is_none() {
            let cut = self.kept.is_some_and(|c| c.body_cut || c.body_bytes.len() >= MAX_CAPTURED_BODY);
            let parsed = if cut { None } else { self.body().and_then(|b| serde_json::from_slice(b).ok()) };
            self.json = Some(parsed);
        }
        self.json.as_ref().and_then(Option::as_ref)
    }

    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.kept.and_then(|c| c.header_named(name))
    }
}

impl Test {
    /// Whether the response passes.
    pub fn passes(&self, seen: &mut Seen<'_>) -> bool {
        match self {
            Test::Status(op, code) => op.holds(seen.status, *code),
            Test::Header(name, t) => text_holds(t, seen.header(name)),
            Test::Body(t) => {
                let body = seen.body();
                text_holds(t, body)
            }
            Test::Json(path, t) => {
                let node = seen.json().and_then(|j| path.query(j).first());
                match (t, node) {
                    (JsonTest::Exists, n) => n.is_some(),
                    (JsonTest::Missing, n) => n.is_none(),
                    (_, None) => false,
                    (JsonTest::Cmp(op @ (Cmp::Eq | Cmp::Ne), want), Some(v)) => {
                        let same = v == want || matches!((v.as_f64(), want.as_f64()), (Some(a), Some(b)) if a == b);
                        same == (*op == Cmp::Eq)
                    }
                    (JsonTest::Cmp(op, want), Some(v)) => match (v.as_f64(), want.as_f64()) {
                        (Some(a), Some(b)) => op.holds(a, b),
                        _ => false,
                    },
                    (JsonTest::Matches(re), Some(v)) => json_text(v, |b| re.is_match(b)),
                    (JsonTest::NotMatches(re), Some(v)) => !json_text(v, |b| re.is_match(b)),
                }
            }
        }
    }
}

/// A string node's value, or another node's JSON text.
fn json_text(v: &Value, f: impl FnOnce(&[u8]) -> bool) -> bool {
    match v {
        Value::String(s) => f(s.as_bytes()),
        other => f(other.to_string().as_bytes()),
    }
}

fn text_holds(t: &Text, value: Option<&[u8]>) -> bool {
    match (t, value) {
        (Text::Exists, v) => v.is_some(),
        (Text::Missing, v) => v.is_none(),
        (_, None) => false,
        (Text::Eq(w), Some(v)) => v == w.as_slice(),
        (Text::Ne(w), Some(v)) => v != w.as_slice(),
        (Text::Contains(w), Some(v)) => contains(v, w),
        (Text::NotContains(w), Some(v)) => !contains(v, w),
        (Text::Matches(re), Some(v)) => re.is_match(v),
        (Text::NotMatches(re), Some(v)) => !re.is_match(v),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine_http::{Progress, ResponseFramer};

    /// Frames `response` keeping what `checks` need, and evaluates them.
    fn run(checks: &[&str], response: &[u8]) -> Vec<bool> {
        let tests: Vec<Test> = checks.iter().map(|c| Test::parse(c).unwrap()).collect();
        let mut want = Capture::default();
        let names: Vec<String> = tests.iter().filter_map(|t| t.needs().0.map(str::to_string)).collect();
        want.want_headers(&names);
        want.body = tests.iter().any(|t| t.needs().1);
        let mut f = ResponseFramer::new();
        f.start_capturing(false, Box::new(want));
        let Ok(Progress::Complete { response: r, .. }) = f.feed(response) else { panic!("incomplete") };
        let kept = f.take_capture().unwrap();
        let mut seen = Seen::new(r.status, Some(&kept));
        tests.iter().map(|t| t.passes(&mut seen)).collect()
    }

    const JSON: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Cache: HIT\r\nTransfer-Encoding: chunked\r\n\r\n\
        10\r\n{\"cached\": true,\r\n1e\r\n \"items\": [{\"id\": 7}], \"n\": 2}\r\n0\r\n\r\n";

    #[test]
    fn checks_pass_and_fail_as_written() {
        let cases: &[(&str, bool)] = &[
            ("status == 200", true),
            ("status != 200", false),
            ("status < 400", true),
            ("status >= 500", false),
            ("header content-type ~ json", true),
            ("header Content-Type contains \"application/\"", true),
            ("header x-cache == HIT", true),
            ("header x-cache == \"MISS\"", false),
            ("header x-missing exists", false),
            ("header x-missing missing", true),
            ("header x-missing != x", false),
            ("body contains \"cached\"", true),
            ("body contains \"\\\"cached\\\": true\"", true),
            ("body !contains \"error\"", true),
            ("body ~ \"items.*id\"", true),
            ("json $.cached == true", true),
            ("json $.cached != true", false),
            ("json $.items[0].id exists", true),
            ("json $.items[1].id exists", false),
            ("json $.items[1].id missing", true),
            ("json $.items[0].id == 7", true),
            ("json $.items[0].id == 7.0", true),
            ("json $.n > 1", true),
            ("json $.n <= 1", false),
            ("json $.items[0].id == \"7\"", false),
            ("json $['items'][0]['id'] >= 7", true),
            ("json $.nothing == 1", false),
            ("json $.cached ~ ^tr", true),
        ];
        let checks: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let got = run(&checks, JSON);
        for ((check, want), got) in cases.iter().zip(got) {
            assert_eq!(got, *want, "{check}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_fails_json_checks_but_not_missing() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            run(&["json $.a exists", "json $.a missing", "json $.a == 1", "body == hello"], r),
            [false, true, false, true]
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (check, says) in [
            ("", "empty"),
            ("status = 200", "status takes"),
            ("status == abc", "not a status code"),
            ("status == 200 300", "left over"),
            ("headers x exists", "a check is on status"),
            ("header exists", "a condition is missing"),
            ("header x-a like y", "'like': the condition"),
            ("body contains", "takes a value"),
            ("body contains a b", "quote a value"),
            ("body contains \"open", "not closed"),
            ("body ~ \"(\"", "regular expression"),
            ("json items exists", "JSONPath"),
            ("json $.a < \"x\"", "compare numbers"),
            ("json $.a == nope", "not a JSON value"),
            ("json $.a", "takes exists"),
        ] {
            let e = Test::parse(check).map(|_| ()).unwrap_err();
            assert!(e.contains(says), "{check}: {e}");
            assert!(e.contains("examples:"), "{e}");
        }
    }

    #[test]
    fn words_keep_quotes_and_brackets() {
        assert_eq!(split("json $['a b'][0] == \"x y\"").unwrap(), ["json", "$['a b'][0]", "==", "\"x y\""]);
        assert_eq!(split("body contains \"say \\\"hi\\\"\"").unwrap(), ["body", "contains", "say \"hi\""]);
    }
}
