//! Performance budgets: limits on measured metrics, read from TOML.
//!
//! ```toml
//! [[budget]]
//! name = "block creation latency"
//! metric = "system.plugins.block_latency_p99"   # see `dubchain-perf bench --list-metrics`
//! threshold = 100.0
//! unit = "ms"
//! severity = "error"                             # or "warning"
//! ```
//!
//! Whether the threshold is a ceiling or a floor follows from the metric: latencies, times,
//! memory and CPU are ceilings; throughput and speed-up ratios are floors. `unit` must be
//! the metric's unit, so that a budget written in seconds against a metric in
//! milliseconds is an error in the file, not a silently wrong limit.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::{Better, Metric};

/// How bad a violation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Fails the run (non-zero exit).
    Error,
    /// Reported; does not fail the run.
    Warning,
}

/// One budget, as written in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub name: String,
    pub metric: String,
    pub threshold: f64,
    pub unit: String,
    pub severity: Severity,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFile {
    #[serde(default)]
    budget: Vec<Budget>,
}

/// A budgets file that cannot be used, with where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct BudgetError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Parses budgets from `text` (read from `path`, which is only used in errors).
pub fn parse(text: &str, path: &Path) -> Result<Vec<Budget>, BudgetError> {
    let err = |line, message: String| BudgetError {
        path: path.display().to_string(),
        line,
        message,
    };
    let file: BudgetFile = toml::from_str(text).map_err(|e| {
        let (line, message) = dubchain_host::manifest::toml_problem(text, &e);
        err(line, message)
    })?;
    for (i, b) in file.budget.iter().enumerate() {
        if !b.threshold.is_finite() {
            return Err(err(
                None,
                format!(
                    "budget {} (`{}`): threshold must be a finite number",
                    i + 1,
                    b.name
                ),
            ));
        }
    }
    Ok(file.budget)
}

/// Reads and parses a budgets file.
pub fn load(path: &Path) -> Result<Vec<Budget>, BudgetError> {
    let text = std::fs::read_to_string(path).map_err(|e| BudgetError {
        path: path.display().to_string(),
        line: None,
        message: e.to_string(),
    })?;
    parse(&text, path)
}

/// Checks that every budget names a metric that exists, in its unit. The metrics are those
/// a full run produces (see `Metric::catalogue`), so a typo is caught before measuring.
pub fn validate(
    budgets: &[Budget], known: &BTreeMap<String, Metric>, path: &Path,
) -> Result<(), Vec<BudgetError>> {
    let mut errors = Vec::new();
    for b in budgets {
        let e = |message: String| BudgetError {
            path: path.display().to_string(),
            line: None,
            message: format!("budget `{}`: {message}", b.name),
        };
        match known.get(&b.metric) {
            None if is_pattern_known(&b.metric, known) => {}
            None => errors.push(e(format!(
                "no metric `{}`; metrics look like {}",
                b.metric,
                known.keys().take(4).cloned().collect::<Vec<_>>().join(", ")
            ))),
            Some(m) if m.unit != b.unit => errors.push(e(format!(
                "metric `{}` is in {}, the budget says {}",
                b.metric, m.unit, b.unit
            ))),
            Some(_) => {}
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Micro metrics are per plugin: `micro.<plugin>.<case>.<what>` names are only known once
/// the plugin set is, so a budget on one is accepted if its last part is a known kind.
fn is_pattern_known(metric: &str, known: &BTreeMap<String, Metric>) -> bool {
    let (Some(first), Some(last)) = (metric.split('.').next(), metric.rsplit('.').next()) else {
        return false;
    };
    (first == "micro" || first == "instructions")
        && known
            .keys()
            .any(|k| k.starts_with(first) && k.rsplit('.').next() == Some(last))
}

/// What a budget says about a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub budget: Budget,
    /// The measured value; `None` when this run did not measure the metric.
    pub value: Option<f64>,
    pub violated: bool,
    pub message: String,
}

/// Checks `budgets` against the metrics of a run.
pub fn check(budgets: &[Budget], metrics: &BTreeMap<String, Metric>) -> Vec<Outcome> {
    budgets
        .iter()
        .map(|b| match metrics.get(&b.metric) {
            None => Outcome {
                budget: b.clone(),
                value: None,
                violated: false,
                message: format!("{}: `{}` was not measured in this run", b.name, b.metric),
            },
            Some(m) => {
                let (violated, relation) = match m.better {
                    Better::Lower => (m.value > b.threshold, "at most"),
                    Better::Higher => (m.value < b.threshold, "at least"),
                };
                let message = format!(
                    "{}: {} = {:.3} {} (budget: {relation} {} {}){}",
                    b.name,
                    b.metric,
                    m.value,
                    m.unit,
                    b.threshold,
                    b.unit,
                    if violated { " VIOLATED" } else { "" }
                );
                Outcome {
                    budget: b.clone(),
                    value: Some(m.value),
                    violated,
                    message,
                }
            }
        })
        .collect()
}

/// Whether any error-level budget is violated.
pub fn fails(outcomes: &[Outcome]) -> bool {
    outcomes
        .iter()
        .any(|o| o.violated && o.budget.severity == Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> BTreeMap<String, Metric> {
        let mut m = BTreeMap::new();
        m.insert(
            "system.plugins.block_latency_p99".to_owned(),
            Metric::new(120.0, "ms", Better::Lower),
        );
        m.insert(
            "system.plugins.throughput".to_owned(),
            Metric::new(900.0, "tx/s", Better::Higher),
        );
        m.insert(
            "micro.crypto_parallel_verification.sig_verify.ratio".to_owned(),
            Metric::new(2.0, "x", Better::Higher),
        );
        m
    }

    const FILE: &str = r#"
[[budget]]
name = "block creation latency"
metric = "system.plugins.block_latency_p99"
threshold = 100.0
unit = "ms"
severity = "error"

[[budget]]
name = "throughput"
metric = "system.plugins.throughput"
threshold = 1000.0
unit = "tx/s"
severity = "warning"

[[budget]]
name = "parallel verification"
metric = "micro.crypto_parallel_verification.sig_verify.ratio"
threshold = 1.5
unit = "x"
severity = "error"
"#;

    #[test]
    fn parses_and_reports_each_violation_with_its_severity() {
        let budgets = parse(FILE, Path::new("budgets.toml")).unwrap();
        assert_eq!(budgets.len(), 3);
        assert_eq!(budgets[1].severity, Severity::Warning);
        validate(&budgets, &metrics(), Path::new("budgets.toml")).unwrap();
        let out = check(&budgets, &metrics());
        assert!(out[0].violated, "120 ms against a 100 ms ceiling");
        assert!(out[1].violated, "900 tx/s against a 1000 tx/s floor");
        assert!(!out[2].violated, "2x against a 1.5x floor");
        assert!(out[0].message.contains("VIOLATED"));
        assert!(fails(&out), "an error-level budget is violated");
        assert!(!fails(&out[1..]), "only a warning is violated");
    }

    #[test]
    fn a_budget_on_a_metric_not_measured_is_reported_not_failed() {
        let budgets = parse(FILE, Path::new("b.toml")).unwrap();
        let mut m = metrics();
        m.remove("system.plugins.block_latency_p99");
        let out = check(&budgets, &m);
        assert_eq!(out[0].value, None);
        assert!(!out[0].violated && out[0].message.contains("not measured"));
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let bad = "[[budget]]\nname = \"x\"\nmetric = \"system.plugins.throughput\"\nthreshold = \"lots\"\nunit = \"tx/s\"\nseverity = \"error\"\n";
        let e = parse(bad, Path::new("ci/budgets.toml")).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().starts_with("ci/budgets.toml:4:"), "{e}");

        let bad = FILE.replace("severity = \"warning\"", "severity = \"fatal\"");
        let e = parse(&bad, Path::new("b.toml")).unwrap_err();
        assert!(
            e.message.contains("fatal") || e.message.contains("variant"),
            "{e}"
        );

        let bad = FILE.replace("unit = \"ms\"", "unit = \"s\"");
        let budgets = parse(&bad, Path::new("b.toml")).unwrap();
        let errs = validate(&budgets, &metrics(), Path::new("b.toml")).unwrap_err();
        assert!(
            errs[0].message.contains("is in ms, the budget says s"),
            "{errs:?}"
        );

        let bad = FILE.replace("system.plugins.throughput", "system.plugins.througput");
        let budgets = parse(&bad, Path::new("b.toml")).unwrap();
        let errs = validate(&budgets, &metrics(), Path::new("b.toml")).unwrap_err();
        assert!(
            errs[0]
                .message
                .contains("no metric `system.plugins.througput`"),
            "{errs:?}"
        );
    }
}
