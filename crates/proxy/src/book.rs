//! The rules in force, shared by the admin API (writer) and the shards (readers, who look at
//! `version` once per tick and take a new `Arc` of the list only when it changed), with what
//! must be counted across the whole proxy: each rule's matches (so `first` and `every` count
//! requests exactly, whichever shard they reach) and what it injected, and the faults active
//! at once against `--max-active-faults`. These are atomics touched only by requests a rule
//! matches, never by the others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::faults::{FaultError, Rule, MAX_RULES};

/// One rule's counts, kept while the rule is (an edit that keeps its id keeps them).
#[derive(Debug, Default)]
pub struct RuleCounters {
    /// Requests the rule matched (its match and schedule), numbered from 1 as they come.
    pub matched: AtomicU64,
    /// Requests it acted on.
    pub injected: AtomicU64,
}

/// A rule's counts in `/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleReport {
    pub id: String,
    pub enabled: bool,
    pub matched: u64,
    pub injected: u64,
}

/// The rules and their counters, replaced whole on every change.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub rules: Arc<Vec<Rule>>,
    pub counters: Arc<Vec<Arc<RuleCounters>>>,
}

#[derive(Debug)]
pub struct FaultBook {
    inner: Mutex<Book>,
    version: AtomicU64,
    shards: usize,
    /// TCP mode: rules act on connections ([`Rule::validate_tcp`]).
    tcp: bool,
    /// At most this many requests under a fault at once (0: no cap).
    max_active: u64,
    active: AtomicU64,
    /// Requests a rule would have faulted, left alone because `max_active` were active.
    overflow: AtomicU64,
}

#[derive(Debug)]
struct Book {
    current: Rules,
    next_id: u64,
}

/// A request under a fault, counted against `max_active` until it is dropped.
#[derive(Debug)]
pub struct Active(Arc<FaultBook>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FaultBook {
    pub fn new(shards: usize, max_active: u64, tcp: bool) -> Self {
        FaultBook {
            inner: Mutex::new(Book { current: Rules::default(), next_id: 1 }),
            version: Default::default(),
            shards,
            tcp,
            max_active,
            active: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        }
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn rules(&self) -> Arc<Vec<Rule>> {
        self.lock().current.rules.clone()
    }

    /// The rules with their counters, as one consistent pair.
    pub fn current(&self) -> Rules {
        self.lock().current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        // A panic while holding this lock cannot leave the list half-written (it is replaced
        // whole), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `rules`, keeping the counters of those whose id survives.
    fn publish(&self, book: &mut Book, rules: Vec<Rule>) {
        let old = &book.current;
        let counters = rules
            .iter()
            .map(|r| {
                old.rules
                    .iter()
                    .position(|o| o.id == r.id)
                    .map_or_else(|| Arc::new(RuleCounters::default()), |i| old.counters[i].clone())
            })
            .collect();
        book.current = Rules { rules: Arc::new(rules), counters: Arc::new(counters) };
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Validates and stores a rule, giving it an id when it has none. Returns the stored rule.
    pub fn add(&self, mut rule: Rule) -> Result<Rule, FaultError> {
        rule.validate(self.shards)?;
        if self.tcp {
            rule.validate_tcp()?;
        }
        let mut book = self.lock();
        let rules = &book.current.rules;
        if rules.len() >= MAX_RULES {
            return Err(FaultError::TooMany);
        }
        match &rule.id {
            Some(id) if rules.iter().any(|r| r.id.as_ref() == Some(id)) => {
                return Err(FaultError::DuplicateId(id.clone()))
            }
            Some(_) => {}
            None => loop {
                let id = format!("fault-{}", book.next_id);
                book.next_id += 1;
                if !book.current.rules.iter().any(|r| r.id.as_deref() == Some(&id)) {
                    rule.id = Some(id);
                    break;
                }
            },
        }
        let mut rules = book.current.rules.as_ref().clone();
        rules.push(rule.clone());
        self.publish(&mut book, rules);
        Ok(rule)
    }

    pub fn remove(&self, id: &str) -> Result<(), FaultError> {
        let mut book = self.lock();
        let mut rules = book.current.rules.as_ref().clone();
        let before = rules.len();
        rules.retain(|r| r.id.as_deref() != Some(id));
        if rules.len() == before {
            return Err(FaultError::NotFound(id.to_string()));
        }
        self.publish(&mut book, rules);
        Ok(())
    }

    /// Switches rule `id` on or off; it keeps its place and its counters.
    pub fn switch(&self, id: &str, on: bool) -> Result<Rule, FaultError> {
        let mut book = self.lock();
        let mut rules = book.current.rules.as_ref().clone();
        let rule = rules
            .iter_mut()
            .find(|r| r.id.as_deref() == Some(id))
            .ok_or_else(|| FaultError::NotFound(id.to_string()))?;
        rule.enabled = on;
        let stored = rule.clone();
        self.publish(&mut book, rules);
        Ok(stored)
    }

    /// Removes every rule.
    pub fn reset(&self) {
        let mut book = self.lock();
        self.publish(&mut book, Vec::new());
    }

    /// A request is about to be faulted: its place among the active faults, or `None` (and
    /// counted as overflow) when `max_active` are.
    pub fn activate(self: &Arc<Self>) -> Option<Active> {
        let now = self.active.fetch_add(1, Ordering::Relaxed);
        if self.max_active > 0 && now >= self.max_active {
            self.active.fetch_sub(1, Ordering::Relaxed);
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Active(self.clone()))
    }

    /// Each rule's counts, the faults active now and the overflow so far.
    pub fn counts(&self) -> (Vec<RuleReport>, u64, u64) {
        let current = self.current();
        let rules = current
            .rules
            .iter()
            .zip(current.counters.iter())
            .map(|(r, c)| RuleReport {
                id: r.id.clone().unwrap_or_default(),
                enabled: r.enabled,
                matched: c.matched.load(Ordering::Relaxed),
                injected: c.injected.load(Ordering::Relaxed),
            })
            .collect();
        (rules, self.active.load(Ordering::Relaxed), self.overflow.load(Ordering::Relaxed))
    }

    pub fn max_active(&self) -> u64 {
        self.max_active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> Rule {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_book_assigns_ids_and_versions() {
        let book = FaultBook::new(1, 0, false);
        let v0 = book.version();
        let a = book.add(rule(r#"{"action": {"reset": {}}}"#)).unwrap();
        assert_eq!(a.id.as_deref(), Some("fault-1"));
        assert!(book.version() > v0);
        let b = book.add(rule(r#"{"id": "slow", "action": {"delay": {"ms": 1}}}"#)).unwrap();
        assert_eq!(book.add(b.clone()), Err(FaultError::DuplicateId("slow".into())));
        assert_eq!(book.rules().len(), 2);
        book.remove("fault-1").unwrap();
        assert_eq!(book.remove("fault-1"), Err(FaultError::NotFound("fault-1".into())));
        book.reset();
        assert!(book.rules().is_empty());
    }

    #[test]
    fn counters_follow_their_rule_and_active_faults_are_capped() {
        let book = Arc::new(FaultBook::new(1, 2, false));
        book.add(rule(r#"{"id": "a", "action": "reset"}"#)).unwrap();
        book.current().counters[0].matched.fetch_add(5, Ordering::Relaxed);
        book.add(rule(r#"{"id": "b", "action": "hang"}"#)).unwrap();
        let (rules, _, _) = book.counts();
        assert_eq!(rules[0], RuleReport { id: "a".into(), enabled: true, matched: 5, injected: 0 });
        assert_eq!(rules[1].matched, 0);
        let (one, two) = (book.activate(), book.activate());
        assert!(one.is_some() && two.is_some());
        assert!(book.activate().is_none(), "a third while two are active");
        drop(one);
        assert!(book.activate().is_some());
        let (_, active, overflow) = book.counts();
        assert_eq!((active, overflow), (1, 1));
    }

    #[test]
    fn a_tcp_book_takes_only_connection_rules() {
        let book = FaultBook::new(1, 0, true);
        assert!(book.add(rule(r#"{"action": {"latency": {"ms": 20}}}"#)).is_ok());
        assert!(book.add(rule(r#"{"action": {"timeout": {"ms": 100}}}"#)).is_ok());
        let err = book.add(rule(r#"{"action": "abort"}"#)).unwrap_err().to_string();
        assert!(err.contains("answer HTTP"), "{err}");
        let err = book.add(rule(r#"{"match": {"path_prefix": "/a"}, "action": "reset"}"#)).unwrap_err().to_string();
        assert!(err.contains("matches connections"), "{err}");
    }
}
