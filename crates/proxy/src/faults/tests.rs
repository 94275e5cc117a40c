//! Rules as the admin API and the faults file give them: parsed, validated, matched.
use super::*;

fn rule(json: &str) -> Rule {
    serde_json::from_str(json).unwrap()
}

#[test]
fn the_design_example_parses_and_round_trips() {
    let r = rule(
        r#"{ "id": "optional-name",
          "match": { "method": "GET", "path_prefix": "/api", "header": { "name": "x-test", "value": "1" } },
          "probability": 0.2, "schedule": { "from_s": 10, "to_s": 70 },
          "action": { "abort": { "status": 503, "retry_after_s": 1, "body": "overloaded" } } }"#,
    );
    assert_eq!(r.validate(2), Ok(()));
    assert_eq!(rule(&serde_json::to_string(&r).unwrap()), r);
    assert!(r.active_at(10.0) && !r.active_at(9.9) && !r.active_at(70.0));
    let hdr = |n: &str| (n.eq_ignore_ascii_case("x-test")).then_some(&b"1"[..]);
    assert!(r.matches("GET", "/api/x", hdr, None));
    assert!(!r.matches("POST", "/api/x", hdr, None));
    assert!(!r.matches("GET", "/other", hdr, None));
    assert!(!r.matches("GET", "/api", |_| None, None));
}

#[test]
fn every_action_parses() {
    for a in [
        r#"{"delay": {"ms": 5, "jitter_ms": 2, "distribution": "exponential"}}"#,
        r#"{"abort": {}}"#,
        r#"{"reset": {}}"#,
        r#"{"throttle": {"bytes_per_s": 1000}}"#,
        r#"{"hang": {}}"#,
        r#"{"concurrency": {"limit": 10, "queue": 20, "queue_timeout_ms": 500}}"#,
        r#"{"rate_limit": {"rps": 100, "burst": 10}}"#,
    ] {
        let r = rule(&format!(r#"{{"action": {a}}}"#));
        assert_eq!(r.validate(2), Ok(()), "{a}");
    }
    // Actions whose fields all have defaults may be given by name, in JSON and TOML.
    for name in ["hang", "reset", "abort"] {
        let bare = rule(&format!(r#"{{"action": "{name}"}}"#));
        assert_eq!(bare.action, rule(&format!(r#"{{"action": {{"{name}": {{}}}}}}"#)).action, "{name}");
    }
    let toml = parse_faults_file("[[fault]]\naction = \"hang\"\n").unwrap();
    assert_eq!(toml[0].action, Action::Hang {});
    assert!(serde_json::from_str::<Rule>(r#"{"action": "delay"}"#).unwrap_err().to_string().contains("ms"));
    assert!(serde_json::from_str::<Rule>(r#"{"action": "explode"}"#).is_err());
}

#[test]
fn bad_rules_are_refused_with_a_reason() {
    let cases = [
        (r#"{"action": {"explode": {}}}"#, None),
        (r#"{"action": {"abort": {}}, "extra": 1}"#, None),
        (r#"{"probability": 1.5, "action": {"abort": {}}}"#, Some("probability")),
        (r#"{"action": {"abort": {"status": 99}}}"#, Some("status")),
        (r#"{"action": {"abort": {"headers": {"X-A": "1\r\nX-Injected: 1"}}}}"#, Some("header")),
        (r#"{"action": {"concurrency": {"limit": 1}}}"#, Some("--shards 1")),
        (r#"{"schedule": {"from_s": 5, "to_s": 1}, "action": {"reset": {}}}"#, Some("schedule")),
        (r#"{"match": {"path_prefix": "api"}, "action": {"reset": {}}}"#, Some("path_prefix")),
        (r#"{"id": "a b", "action": {"reset": {}}}"#, Some("id")),
        (r#"{"first": 3, "every": 2, "action": "reset"}"#, Some("not go together")),
        (r#"{"every": 0, "action": "reset"}"#, Some("every")),
        (r#"{"exclude": ["healthz"], "action": "reset"}"#, Some("exclude")),
        (r#"{"match": {"header": {"name": "x", "regex": "("}}, "action": "reset"}"#, Some("regex")),
        (r#"{"match": {"header": {"name": "x", "regex": "a", "value": "a"}}, "action": "reset"}"#, Some("not both")),
    ];
    for (json, reason) in cases {
        match (serde_json::from_str::<Rule>(json), reason) {
            (Err(_), None) => {}
            (Ok(r), Some(want)) => {
                let err = r.validate(2).unwrap_err().to_string();
                assert!(err.contains(want), "{json}: {err}");
            }
            (res, _) => panic!("{json}: unexpected {res:?}"),
        }
    }
}

#[test]
fn first_every_exclude_and_header_regexes_select_what_they_say() {
    let first = rule(r#"{"first": 3, "action": "reset"}"#);
    assert_eq!((1..=10).filter(|n| first.selects(*n)).collect::<Vec<_>>(), [1, 2, 3]);
    let every = rule(r#"{"every": 4, "action": "reset"}"#);
    assert_eq!((1..=12).filter(|n| every.selects(*n)).collect::<Vec<_>>(), [4, 8, 12]);
    let ex = rule(r#"{"exclude": ["/healthz", "/ready"], "action": "abort"}"#);
    assert!(ex.matches("GET", "/api", |_| None, None));
    assert!(!ex.matches("GET", "/healthz", |_| None, None) && !ex.matches("GET", "/ready?x", |_| None, None));
    let r = rule(r#"{"match": {"header": {"name": "x-user", "regex": "^beta-[0-9]+$"}}, "action": "reset"}"#);
    assert_eq!(r.validate(1), Ok(()));
    let re = header_regex(r.matcher.header.as_ref().unwrap().regex.as_ref().unwrap()).unwrap();
    let hdr = |v: &'static [u8]| move |n: &str| (n == "x-user").then_some(v);
    assert!(r.matches("GET", "/", hdr(b"beta-12"), Some(&re)));
    assert!(!r.matches("GET", "/", hdr(b"beta-x"), Some(&re)));
    assert!(!r.matches("GET", "/", |_| None, Some(&re)));
}

#[test]
fn faults_files_hold_the_same_fields() {
    let rules = parse_faults_file(
        "[[fault]]\nid = \"slow\"\nprobability = 0.5\naction = { delay = { ms = 5 } }\n\n\
         [[fault]]\nmatch = { path_prefix = \"/api\" }\n[fault.action.abort]\nstatus = 429\nretry_after_s = 2\n",
    )
    .unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[1].action,
        Action::Abort {
            status: 429,
            retry_after_s: Some(2),
            body: None,
            headers: Default::default(),
            grpc_status: None,
            grpc_message: None
        }
    );
    let err = parse_faults_file("[[fault]]\nactoin = 1\n").unwrap_err().to_string();
    assert!(err.contains("line"), "{err}");
}

#[test]
fn grpc_fields_parse_by_name_or_number_and_match_only_grpc_calls() {
    let r = rule(
        r#"{"match": {"grpc_method": "/demo.Echo/Fail"},
            "action": {"abort": {"grpc_status": 14, "grpc_message": "down"}}}"#,
    );
    assert_eq!(r.validate(1), Ok(()));
    let Action::Abort { grpc_status, .. } = &r.action else { panic!("an abort") };
    assert_eq!(*grpc_status, Some(GrpcStatus(14)));
    assert!(serde_json::to_string(&r).unwrap().contains(r#""grpc_status":"UNAVAILABLE""#));
    assert_eq!(rule(&serde_json::to_string(&r).unwrap()), r);
    let grpc = |n: &str| (n == "content-type").then_some(&b"application/grpc+proto"[..]);
    let json = |n: &str| (n == "content-type").then_some(&b"application/json"[..]);
    assert!(r.matches("POST", "/demo.Echo/Fail", grpc, None));
    assert!(!r.matches("POST", "/demo.Echo/Fail", json, None));
    assert!(!r.matches("POST", "/demo.Echo/Echo", grpc, None));
    assert!(serde_json::from_str::<Rule>(r#"{"action": {"abort": {"grpc_status": "SLOW"}}}"#).is_err());
    let bad = rule(r#"{"match": {"grpc_method": "demo.Echo/Fail"}, "action": "abort"}"#);
    assert!(bad.validate(1).is_err());
    let reset = rule(r#"{"action": {"reset": {"h2_code": 8}}}"#);
    assert_eq!(reset.action, Action::Reset { h2_code: Some(8) });
}
