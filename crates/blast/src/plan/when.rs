//! A flow step's condition (`if = "..."`): on the status of the step before it in the same
//! iteration, or on a value the user has captured. A step whose condition does not hold is
//! skipped, as one whose probability draw says no.

use super::expect::StatusSet;

/// A parsed condition; `var` is filled in when the plan numbers the captures.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    /// As written, for messages.
    pub text: String,
    pub test: Test,
    /// `!=`, `missing`, `not in`: the test's opposite.
    pub negate: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `status == 200`, `status in 200-299`: the previous step's status in this iteration (0
    /// before its first step, or after a step that got no response).
    Status(StatusSet),
    /// `cap.NAME exists`: the user has a non-empty value for NAME.
    Captured { name: String, var: usize },
    /// `cap.NAME == "gold"`.
    Equals { name: String, var: usize, value: Vec<u8> },
}

impl When {
    /// `status == 200`, `status != 404`, `status in 200-299,304`, `status not in 500-599`,
    /// `cap.NAME exists`, `cap.NAME missing`, `cap.NAME == "text"`, `cap.NAME != "text"`.
    pub fn parse(text: &str) -> Result<When, String> {
        let bad = || {
            format!(
                "invalid condition '{text}' (use: status == 200, status != 404, status in 200-299, \
                 cap.NAME exists, cap.NAME missing, cap.NAME == \"text\", cap.NAME != \"text\")"
            )
        };
        let t = text.trim();
        let when = |test, negate| Ok(When { text: t.to_string(), test, negate });
        if let Some(rest) = t.strip_prefix("status") {
            let rest = rest.trim_start();
            let (negate, list) = if let Some(l) = rest.strip_prefix("==") {
                (false, l)
            } else if let Some(l) = rest.strip_prefix("!=") {
                (true, l)
            } else if let Some(l) = rest.strip_prefix("not in ") {
                (true, l)
            } else if let Some(l) = rest.strip_prefix("in ") {
                (false, l)
            } else {
                return Err(bad());
            };
            let set = StatusSet::parse(list.trim()).map_err(|e| format!("condition '{t}': {e}"))?;
            return when(Test::Status(set), negate);
        }
        let rest = t.strip_prefix("cap.").ok_or_else(bad)?;
        let name_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
        let (name, op) = (rest[..name_end].to_string(), rest[name_end..].trim());
        if name.is_empty() {
            return Err(bad());
        }
        match op {
            "exists" => return when(Test::Captured { name, var: 0 }, false),
            "missing" => return when(Test::Captured { name, var: 0 }, true),
            _ => {}
        }
        let (negate, value) = match (op.strip_prefix("=="), op.strip_prefix("!=")) {
            (Some(v), _) => (false, v),
            (_, Some(v)) => (true, v),
            _ => return Err(bad()),
        };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).ok_or_else(bad)?;
        when(Test::Equals { name, var: 0, value: value.as_bytes().to_vec() }, negate)
    }

    /// The capture variable it reads, if any.
    pub fn capture(&self) -> Option<&str> {
        match &self.test {
            Test::Status(_) => None,
            Test::Captured { name, .. } | Test::Equals { name, .. } => Some(name),
        }
    }

    /// Points the test at the plan's capture `var`.
    pub(super) fn resolve(&mut self, index: usize) {
        if let Test::Captured { var, .. } | Test::Equals { var, .. } = &mut self.test {
            *var = index;
        }
    }

    /// Whether it holds after a previous step's `status` (0: none), with the user's `values`.
    pub fn holds(&self, status: u16, values: &[Vec<u8>]) -> bool {
        let value = |var: usize| values.get(var).map_or(&[][..], Vec::as_slice);
        let yes = match &self.test {
            Test::Status(set) => status != 0 && set.contains(status),
            Test::Captured { var, .. } => !value(*var).is_empty(),
            Test::Equals { var, value: want, .. } => value(*var) == want.as_slice(),
        };
        yes != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let holds = |text: &str, status: u16, value: &str| {
            let mut w = When::parse(text).unwrap();
            w.resolve(0);
            w.holds(status, &[value.as_bytes().to_vec()])
        };
        assert!(holds("status == 200", 200, "") && !holds("status == 200", 404, ""));
        assert!(holds("status != 404", 200, "") && !holds("status != 404", 404, ""));
        assert!(holds("status in 200-299,304", 304, "") && !holds("status in 200-299", 0, ""));
        assert!(holds("status not in 500-599", 200, "") && holds("status != 200", 0, ""));
        assert!(holds("cap.token exists", 0, "abc") && !holds("cap.token exists", 0, ""));
        assert!(holds("cap.token missing", 0, "") && !holds("cap.token missing", 0, "x"));
        assert!(holds(r#"cap.tier == "gold""#, 0, "gold") && !holds(r#"cap.tier == "gold""#, 0, "silver"));
        assert!(holds(r#"cap.tier != "gold""#, 0, "silver") && holds(r#"cap.tier == """#, 0, ""));
        assert_eq!(When::parse("cap.cart_id exists").unwrap().capture(), Some("cart_id"));
        for bad in ["", "status", "status ~ 200", "status == 2000", "cap. exists", "cap.x", "cap.x == gold", "body ok"]
        {
            assert!(When::parse(bad).is_err(), "{bad}");
        }
    }
}
