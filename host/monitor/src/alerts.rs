//! Alert rules: written in TOML, evaluated live over the gathered metrics, and exported as
//! Prometheus alerting rules, so a node and a Prometheus server alert on the same
//! conditions from one source.
//!
//! A rule reads one metric of [`METRICS`](crate::metrics::METRICS) (optionally only the
//! series with some label values), aggregates its series (`sum`, `max` or `min`; of their
//! increase over a window if `increase` is set, for counters) and compares the result with
//! a threshold. Semantics are Prometheus's: no matching series, no alert; the condition
//! must hold for `for` (pending) before the rule fires; and `cooldown` is Prometheus's
//! `keep_firing_for`: a firing rule stays firing until its condition has been false for the
//! whole cooldown, so a condition that flaps inside it never fires twice.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::metrics::{self, Family, Kind, Metric, Value};

/// A rule as written (`[[rule]]` of the monitor's configuration, `config.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleToml {
    name: String,
    metric: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    aggregate: Aggregate,
    increase: Option<String>,
    op: String,
    threshold: f64,
    #[serde(rename = "for")]
    pending: Option<String>,
    cooldown: Option<String>,
    severity: Severity,
    summary: String,
}

/// How a rule combines the series it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    #[default]
    Max,
    Min,
    Sum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

const OPS: [&str; 6] = [">", ">=", "<", "<=", "==", "!="];

/// One checked rule.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub name: String,
    pub metric: &'static str,
    pub labels: BTreeMap<String, String>,
    pub aggregate: Aggregate,
    /// Alert on the increase over this window rather than the value.
    #[serde(with = "secs_opt")]
    pub increase: Option<Duration>,
    pub op: &'static str,
    pub threshold: f64,
    #[serde(rename = "for", with = "secs")]
    pub pending: Duration,
    #[serde(with = "secs")]
    pub cooldown: Duration,
    pub severity: Severity,
    pub summary: String,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration, s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod secs_opt {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>, s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

impl Rule {
    fn holds(&self, value: f64) -> bool {
        let t = self.threshold;
        match self.op {
            ">" => value > t,
            ">=" => value >= t,
            "<" => value < t,
            "<=" => value <= t,
            "==" => value == t,
            _ => value != t,
        }
    }

    /// The rule's condition as a PromQL expression.
    pub fn promql(&self) -> String {
        let matchers: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).expect("a string")))
            .collect();
        let selector = if matchers.is_empty() {
            self.metric.to_owned()
        } else {
            format!("{}{{{}}}", self.metric, matchers.join(","))
        };
        let inner = match self.increase {
            Some(w) => format!("increase({selector}[{}])", duration_text(w)),
            None => selector,
        };
        let agg = match self.aggregate {
            Aggregate::Max => "max",
            Aggregate::Min => "min",
            Aggregate::Sum => "sum",
        };
        format!("{agg}({inner}) {} {}", self.op, self.threshold)
    }
}

/// `d` as Prometheus writes durations: `1h`, `5m`, `30s`, `1500ms`.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// `500ms`, `30s`, `5m`, `1h` (one number and one unit).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write 500ms, 30s, 5m or 1h)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => {
            return Err(format!(
                "`{s}` is not a duration (write 500ms, 30s, 5m or 1h)"
            ))
        }
    })
}

/// The rules of the monitor configuration in `text` (from `origin`); see
/// [`crate::config::parse`].
pub fn parse(text: &str, origin: &str) -> (Vec<Rule>, Vec<String>) {
    let (config, errors) = crate::config::parse(text, origin);
    (config.rules, errors)
}

/// Checks each rule as written; each broken one is one line naming `origin`, the rule and
/// the problem, and is left out.
pub(crate) fn check_all(written: Vec<RuleToml>, origin: &str) -> (Vec<Rule>, Vec<String>) {
    let mut rules: Vec<Rule> = Vec::new();
    let mut errors = Vec::new();
    for r in written {
        let name = r.name.clone();
        if rules.iter().any(|x| x.name == name) {
            errors.push(format!(
                "{origin}: rule `{name}` is defined twice; the first is kept, rename one"
            ));
            continue;
        }
        match check(r) {
            Ok(rule) => rules.push(rule),
            Err(e) => errors.push(format!("{origin}: rule `{name}` left out: {e}")),
        }
    }
    (rules, errors)
}

fn check(r: RuleToml) -> Result<Rule, String> {
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err("a name is letters, digits and `_`".into());
    }
    let metric: &'static Metric = metrics::find(&r.metric).ok_or_else(|| {
        format!(
            "no metric `{}` is exported (the list: `dubchain-perf monitor metrics`)",
            r.metric
        )
    })?;
    if metric.kind == Kind::Histogram {
        return Err(format!(
            "`{}` is a histogram; rules read counters and gauges",
            metric.name
        ));
    }
    if let Some(k) = r
        .labels
        .keys()
        .find(|k| !metric.labels.contains(&k.as_str()))
    {
        return Err(format!(
            "`{}` has no label `{k}` (its labels: {})",
            metric.name,
            if metric.labels.is_empty() {
                "none".to_owned()
            } else {
                metric.labels.join(", ")
            }
        ));
    }
    let increase = r.increase.as_deref().map(parse_duration).transpose()?;
    if increase.is_some() && metric.kind != Kind::Counter {
        return Err(format!(
            "`increase` needs a counter; `{}` is a gauge",
            metric.name
        ));
    }
    if increase == Some(Duration::ZERO) {
        return Err("`increase` needs a window longer than 0".into());
    }
    let op = OPS
        .iter()
        .find(|o| **o == r.op)
        .ok_or_else(|| format!("`op = \"{}\"` is not one of {}", r.op, OPS.join(" ")))?;
    if !r.threshold.is_finite() {
        return Err("`threshold` must be a finite number".into());
    }
    Ok(Rule {
        name: r.name,
        metric: metric.name,
        labels: r.labels,
        aggregate: r.aggregate,
        increase,
        op,
        threshold: r.threshold,
        pending: r
            .pending
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .unwrap_or_default(),
        cooldown: r
            .cooldown
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .unwrap_or_default(),
        severity: r.severity,
        summary: r.summary,
    })
}

/// The rules as a Prometheus rules file (YAML; strings written as JSON strings, which YAML
/// reads as double-quoted scalars).
pub fn prometheus_rules(rules: &[Rule]) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string");
    let mut out = String::from(
        "# Generated by `dubchain-perf monitor rules` from the node's alert rules; the node\n\
         # evaluates the same rules itself (`/api/alerts`).\n\
         groups:\n  - name: dubchain\n    rules:\n",
    );
    for r in rules {
        out += &format!("      - alert: {}\n", r.name);
        out += &format!("        expr: {}\n", q(&r.promql()));
        if !r.pending.is_zero() {
            out += &format!("        for: {}\n", duration_text(r.pending));
        }
        if !r.cooldown.is_zero() {
            out += &format!("        keep_firing_for: {}\n", duration_text(r.cooldown));
        }
        out += &format!("        labels:\n          severity: {}\n", r.severity);
        out += &format!(
            "        annotations:\n          summary: {}\n",
            q(&r.summary)
        );
    }
    out
}

/// Where a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
}

/// A rule moving from one phase to another.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub rule: String,
    pub severity: Severity,
    /// `pending`, `firing` or `resolved`.
    pub to: &'static str,
    /// Seconds since the Unix epoch.
    pub at: f64,
    pub value: Option<f64>,
    pub summary: String,
}

/// A rule and where it is, as `/api/alerts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatus {
    pub rule: Rule,
    pub phase: Phase,
    /// The aggregated value at the last evaluation (`None`: no matching series).
    pub value: Option<f64>,
    /// Seconds since the rule started pending or firing.
    pub active_for: Option<f64>,
}

struct RuleState {
    rule: Rule,
    phase: Phase,
    /// When the current phase began.
    since: Instant,
    /// While firing: when the condition last became false.
    clear_since: Option<Instant>,
    value: Option<f64>,
    /// For `increase` rules: past values of each matching series.
    history: VecDeque<(Instant, BTreeMap<String, f64>)>,
}

/// The evaluator: every rule's phase, and the latest transitions.
pub struct Engine {
    rules: Vec<RuleState>,
    transitions: VecDeque<Transition>,
}

/// How many transitions `/api/alerts` remembers.
pub const REMEMBERED: usize = 200;

impl Engine {
    pub fn new(rules: Vec<Rule>, now: Instant) -> Engine {
        Engine {
            rules: rules
                .into_iter()
                .map(|rule| RuleState {
                    rule,
                    phase: Phase::Inactive,
                    since: now,
                    clear_since: None,
                    value: None,
                    history: VecDeque::new(),
                })
                .collect(),
            transitions: VecDeque::new(),
        }
    }

    /// Evaluates every rule over `families` as gathered at `now`; returns the transitions
    /// (also logged and remembered).
    pub fn evaluate(&mut self, now: Instant, families: &[Family]) -> Vec<Transition> {
        let mut out = Vec::new();
        for r in &mut self.rules {
            let value = r.value_at(now, families);
            r.value = value;
            let holds = value.is_some_and(|v| r.rule.holds(v));
            let to = match (r.phase, holds) {
                (Phase::Inactive, true) if r.rule.pending.is_zero() => Some(Phase::Firing),
                (Phase::Inactive, true) => Some(Phase::Pending),
                (Phase::Pending, false) => Some(Phase::Inactive),
                (Phase::Pending, true) if now - r.since >= r.rule.pending => Some(Phase::Firing),
                (Phase::Firing, true) => {
                    r.clear_since = None;
                    None
                }
                (Phase::Firing, false) => {
                    let cleared = *r.clear_since.get_or_insert(now);
                    (now - cleared >= r.rule.cooldown).then_some(Phase::Inactive)
                }
                _ => None,
            };
            let Some(to) = to else { continue };
            let name = match (r.phase, to) {
                (_, Phase::Pending) => Some("pending"),
                (_, Phase::Firing) => Some("firing"),
                (Phase::Firing, Phase::Inactive) => Some("resolved"),
                _ => None,
            };
            r.phase = to;
            r.since = now;
            r.clear_since = None;
            if let Some(name) = name {
                let t = Transition {
                    rule: r.rule.name.clone(),
                    severity: r.rule.severity,
                    to: name,
                    at: SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64(),
                    value,
                    summary: r.rule.summary.clone(),
                };
                match name {
                    "firing" => {
                        tracing::warn!(rule = %t.rule, severity = %t.severity, value = ?t.value, "alert firing: {}", t.summary)
                    }
                    "resolved" => tracing::info!(rule = %t.rule, "alert resolved"),
                    _ => tracing::debug!(rule = %t.rule, value = ?t.value, "alert pending"),
                }
                out.push(t);
            }
        }
        for t in &out {
            if self.transitions.len() == REMEMBERED {
                self.transitions.pop_front();
            }
            self.transitions.push_back(t.clone());
        }
        out
    }

    /// Every rule and its phase.
    pub fn status(&self, now: Instant) -> Vec<RuleStatus> {
        self.rules
            .iter()
            .map(|r| RuleStatus {
                rule: r.rule.clone(),
                phase: r.phase,
                value: r.value,
                active_for: (r.phase != Phase::Inactive).then(|| (now - r.since).as_secs_f64()),
            })
            .collect()
    }

    /// The latest transitions, oldest first.
    pub fn transitions(&self) -> Vec<Transition> {
        self.transitions.iter().cloned().collect()
    }

    /// `(rule, severity, firing)` of every rule.
    pub fn firing(&self) -> Vec<(String, String, bool)> {
        self.rules
            .iter()
            .map(|r| {
                (
                    r.rule.name.clone(),
                    r.rule.severity.to_string(),
                    r.phase == Phase::Firing,
                )
            })
            .collect()
    }
}

impl RuleState {
    /// The rule's aggregated value over `families` at `now`; `None` without a matching
    /// series.
    fn value_at(&mut self, now: Instant, families: &[Family]) -> Option<f64> {
        let family = families
            .iter()
            .find(|f| f.metric.name == self.rule.metric)?;
        let series: BTreeMap<String, f64> = family
            .samples
            .iter()
            .filter(|s| s.matches(&self.rule.labels))
            .filter_map(|s| match s.value {
                Value::Number(v) => Some((series_key(&s.labels), v)),
                Value::Histogram(_) => None,
            })
            .collect();
        let values: Vec<f64> = match self.rule.increase {
            None => series.values().copied().collect(),
            Some(window) => {
                self.history.push_back((now, series.clone()));
                // Keep the newest sample at or before the window's start, and all after it.
                while self.history.len() > 1 && now - self.history[1].0 >= window {
                    self.history.pop_front();
                }
                series
                    .iter()
                    .map(|(key, &current)| {
                        // The series' value at the window's start; 0 if it appeared
                        // since (a counter born inside the window counts from 0); its
                        // current value at the rule's first evaluation (its past unknown).
                        let start = match self.history.front().and_then(|(_, old)| old.get(key)) {
                            Some(v) => *v,
                            None if self.history.len() > 1 => 0.0,
                            None => current,
                        };
                        // A counter that went down was reset (a new provider): all of it is new.
                        if current >= start {
                            current - start
                        } else {
                            current
                        }
                    })
                    .collect()
            }
        };
        if values.is_empty() {
            return None;
        }
        Some(match self.rule.aggregate {
            Aggregate::Sum => values.iter().sum(),
            Aggregate::Max => values.iter().copied().fold(f64::MIN, f64::max),
            Aggregate::Min => values.iter().copied().fold(f64::MAX, f64::min),
        })
    }
}

fn series_key(labels: &[(&'static str, String)]) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Sample, METRICS};

    fn families(name: &str, values: &[(&str, f64)]) -> Vec<Family> {
        let metric = metrics::find(name).unwrap();
        vec![Family {
            metric,
            samples: values
                .iter()
                .map(|(slot, v)| Sample {
                    labels: vec![("slot", (*slot).to_owned())],
                    value: Value::Number(*v),
                })
                .collect(),
        }]
    }

    fn one_rule(text: &str) -> Rule {
        let (mut rules, errors) = parse(text, "test.toml");
        assert!(errors.is_empty(), "{errors:?}");
        rules.remove(0)
    }

    const FALLBACKS: &str = r#"
        [[rule]]
        name = "Fallbacks"
        metric = "dubchain_slot_fallbacks_total"
        labels = { slot = "crypto.sig_verify" }
        aggregate = "sum"
        op = ">"
        threshold = 10
        for = "30s"
        cooldown = "5m"
        severity = "warning"
        summary = "the verifier keeps falling back"
    "#;

    #[test]
    fn a_rule_fires_after_its_pending_period_and_not_again_inside_its_cooldown() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut e = Engine::new(vec![one_rule(FALLBACKS)], t0);
        let high = families(
            "dubchain_slot_fallbacks_total",
            &[("crypto.sig_verify", 50.0)],
        );
        let low = families(
            "dubchain_slot_fallbacks_total",
            &[("crypto.sig_verify", 5.0)],
        );
        let to = |v: Vec<Transition>| v.iter().map(|t| t.to).collect::<Vec<_>>();
        assert_eq!(to(e.evaluate(at(0), &high)), ["pending"]);
        assert_eq!(
            to(e.evaluate(at(29), &high)),
            Vec::<&str>::new(),
            "still pending"
        );
        assert_eq!(to(e.evaluate(at(30), &high)), ["firing"]);
        // The condition clears and comes back inside the cooldown: the same firing goes on.
        assert!(e.evaluate(at(60), &low).is_empty());
        assert!(e.evaluate(at(200), &high).is_empty());
        assert_eq!(e.status(at(200))[0].phase, Phase::Firing);
        // Clear for less than the cooldown: still firing; for all of it: resolved.
        assert!(e.evaluate(at(210), &low).is_empty());
        assert!(e.evaluate(at(509), &low).is_empty());
        assert_eq!(to(e.evaluate(at(510), &low)), ["resolved"]);
        // A new episode pends again before it fires.
        assert_eq!(to(e.evaluate(at(600), &high)), ["pending"]);
        assert_eq!(e.firing(), [("Fallbacks".into(), "warning".into(), false)]);
    }

    #[test]
    fn a_condition_that_clears_while_pending_never_fires() {
        let t0 = Instant::now();
        let mut e = Engine::new(vec![one_rule(FALLBACKS)], t0);
        let high = families(
            "dubchain_slot_fallbacks_total",
            &[("crypto.sig_verify", 50.0)],
        );
        let other = families("dubchain_slot_fallbacks_total", &[("crypto.merkle", 50.0)]);
        e.evaluate(t0, &high);
        // Only another slot's series: no matching series, no alert.
        e.evaluate(t0 + Duration::from_secs(10), &other);
        assert_eq!(e.status(t0)[0].value, None);
        let t = e.evaluate(t0 + Duration::from_secs(40), &high);
        assert_eq!(t.iter().map(|t| t.to).collect::<Vec<_>>(), ["pending"]);
    }

    #[test]
    fn increase_rules_count_from_the_window_start_and_survive_resets() {
        let rule = one_rule(
            r#"
            [[rule]]
            name = "Burst"
            metric = "dubchain_slot_calls_total"
            aggregate = "sum"
            increase = "1m"
            op = ">="
            threshold = 100
            severity = "info"
            summary = "busy"
        "#,
        );
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut e = Engine::new(vec![rule], t0);
        let f = |a: f64, b: f64| {
            families(
                "dubchain_slot_calls_total",
                &[("crypto.sig_verify", a), ("crypto.merkle", b)],
            )
        };
        e.evaluate(at(0), &f(1000.0, 0.0));
        e.evaluate(at(30), &f(1050.0, 20.0));
        assert_eq!(e.status(at(30))[0].value, Some(70.0));
        // 90 s: the window starts at 30 s.
        let t = e.evaluate(at(90), &f(1120.0, 60.0));
        assert_eq!(e.status(at(90))[0].value, Some(110.0));
        assert_eq!(t[0].to, "firing");
        // A reset (the provider reloaded): its whole new count is increase.
        e.evaluate(at(100), &f(10.0, 60.0));
        assert_eq!(e.status(at(100))[0].value, Some(10.0 + 40.0));
        // A series born after the rule began (a plugin loaded since) counts from 0.
        let mut with_new = f(20.0, 60.0);
        with_new[0].samples.push(Sample {
            labels: vec![("slot", "net.transport".to_owned())],
            value: Value::Number(7.0),
        });
        e.evaluate(at(110), &with_new);
        assert_eq!(e.status(at(110))[0].value, Some(20.0 + 40.0 + 7.0));
    }

    #[test]
    fn broken_rules_are_left_out_with_one_line_each_and_the_rest_load() {
        // A rule on `dubchain_peers` with `extra` keys.
        let peers = |name: &str, extra: &str| {
            format!(
                "[[rule]]\nname = \"{name}\"\nmetric = \"dubchain_peers\"\nop = \"<\"\nthreshold = 1\n\
                 severity = \"critical\"\nsummary = \"x\"\n{extra}\n"
            )
        };
        let no_such = "[[rule]]\nname = \"NoSuch\"\nmetric = \"dubchain_nothing\"\nop = \">\"\n\
                       threshold = 1\nseverity = \"info\"\nsummary = \"x\"\n";
        let text = [
            FALLBACKS,
            no_such,
            &peers("BadLabel", "labels = { slot = \"x\" }"),
            &peers("BadFor", "for = \"soon\""),
        ]
        .concat();
        let (rules, errors) = parse(&text, "alerts.toml");
        assert_eq!(rules.len(), 1);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("alerts.toml: rule `NoSuch` left out: no metric `dubchain_nothing`"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].contains("`dubchain_peers` has no label `slot` (its labels: none)"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].contains("`soon` is not a duration"),
            "{}",
            errors[2]
        );
        let (none, errors) = parse("[[rule]\nname = 1", "alerts.toml");
        assert!(none.is_empty());
        assert!(errors[0].starts_with("alerts.toml: line 1:"), "{errors:?}");
    }

    #[test]
    fn the_default_rules_load_and_export_as_prometheus_rules() {
        let (rules, errors) = parse(crate::config::DEFAULT, "default");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!rules.is_empty());
        let yaml = prometheus_rules(&rules);
        for r in &rules {
            assert!(yaml.contains(&format!("- alert: {}\n", r.name)));
            assert!(METRICS.iter().any(|m| m.name == r.metric));
        }
        let r = one_rule(FALLBACKS);
        assert_eq!(
            r.promql(),
            r#"sum(dubchain_slot_fallbacks_total{slot="crypto.sig_verify"}) > 10"#
        );
        let yaml = prometheus_rules(&[r]);
        assert!(
            yaml.contains("        for: 30s\n        keep_firing_for: 5m\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains(
                r#"expr: "sum(dubchain_slot_fallbacks_total{slot=\"crypto.sig_verify\"}) > 10""#
            ),
            "{yaml}"
        );
    }

    #[test]
    fn the_shipped_prometheus_rules_are_the_default_rules() {
        // The checkout the test runs in (cargo and nextest set the variable), not the one
        // it was built in: a target directory shared by two checkouts may hold either.
        let path = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
            .join("../../docs/prometheus-rules.yml");
        let shipped = std::fs::read_to_string(path).unwrap_or_default();
        let generated = prometheus_rules(&parse(crate::config::DEFAULT, "default").0);
        assert!(
            shipped == generated,
            "docs/prometheus-rules.yml is not the built-in rules: run `dubchain-perf monitor rules > docs/prometheus-rules.yml`"
        );
    }
}
