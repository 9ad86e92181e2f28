//! The monitor's configuration file (TOML): alert rules (`[[rule]]`), shadow checking
//! (`[shadow]`) and live performance contracts (`[contracts]`). `monitor.toml` in this
//! crate is the built-in one and documents every key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::alerts::{self, Rule, RuleToml};

/// The configuration a node runs with when given none.
pub const DEFAULT: &str = include_str!("../monitor.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<RuleToml>,
    #[serde(default)]
    shadow: Shadow,
    #[serde(default)]
    contracts: Contracts,
}

/// `[shadow]`: how many calls of the replayable slots are checked against the baseline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shadow {
    /// One call in this many, drawn at random (0: off).
    pub every: u32,
    /// Samples waiting for the checker at most; more are dropped and counted.
    pub queue: usize,
    /// Speed-up samples kept per provider for the live contracts (the newest).
    pub window: usize,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow {
            every: 100,
            queue: 64,
            window: 200,
        }
    }
}

/// What the monitor does when a provider's live speed-up breaks its manifest's contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Set `dubchain_contract_broken` (the built-in `ContractBroken` rule alerts on it).
    #[default]
    Alert,
    /// Also disable the plugin, as `POST /api/plugins/{name}/disable` would.
    Rollback,
}

/// `[contracts]`: live performance contracts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Contracts {
    pub action: Action,
    /// A contract is broken when the whole 95% interval of the live speed-up is under
    /// `min_speedup * (1 - tolerance)`.
    pub tolerance: f64,
    /// Samples a provider needs before it is judged.
    pub min_samples: usize,
}

impl Default for Contracts {
    fn default() -> Self {
        Contracts {
            action: Action::Alert,
            tolerance: 0.1,
            min_samples: 30,
        }
    }
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub rules: Vec<Rule>,
    pub shadow: Shadow,
    pub contracts: Contracts,
}

/// Reads the configuration in `text` (from `origin`, named in every message). A broken rule
/// or setting is one line and is left out (a setting keeps its default); a file that is not
/// valid TOML gives the defaults without rules, and one line.
pub fn parse(text: &str, origin: &str) -> (MonitorConfig, Vec<String>) {
    parse_file(text, origin).unwrap_or_else(|e| {
        let config = MonitorConfig {
            rules: Vec::new(),
            shadow: Shadow::default(),
            contracts: Contracts::default(),
        };
        (config, vec![e])
    })
}

/// Reads the configuration file at `path`, as [`parse`] does, except that a file that
/// cannot be read or is not TOML is an error: nothing in it can be used, and a node
/// started without the alerts it was given would look watched when it is not.
pub fn read(path: &Path) -> Result<(MonitorConfig, Vec<String>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e}; give a readable --monitor-config", path.display()))?;
    parse_file(&text, &path.display().to_string())
}

/// [`parse`], with a file that is not TOML an error.
fn parse_file(text: &str, origin: &str) -> Result<(MonitorConfig, Vec<String>), String> {
    let file: File = toml::from_str(text).map_err(|e| {
        let (line, message) = dubchain_host::manifest::toml_problem(text, &e);
        let line = line.map(|l| format!(" line {l}:")).unwrap_or_default();
        format!("{origin}:{line} {message}; fix the file (a node reads it when it starts)")
    })?;
    let (rules, mut errors) = alerts::check_all(file.rule, origin);
    let mut shadow = file.shadow;
    if shadow.queue == 0 {
        errors.push(format!(
            "{origin}: [shadow] queue = 0 holds no sample; using {}",
            Shadow::default().queue
        ));
        shadow.queue = Shadow::default().queue;
    }
    if shadow.window < 10 {
        errors.push(format!("{origin}: [shadow] window = {} is too few samples for an interval (at least 10); using {}", shadow.window, Shadow::default().window));
        shadow.window = Shadow::default().window;
    }
    let mut contracts = file.contracts;
    if !(0.0..1.0).contains(&contracts.tolerance) {
        errors.push(format!(
            "{origin}: [contracts] tolerance = {} is not in [0, 1); using {}",
            contracts.tolerance,
            Contracts::default().tolerance
        ));
        contracts.tolerance = Contracts::default().tolerance;
    }
    if contracts.min_samples < 10 || contracts.min_samples > shadow.window {
        errors.push(format!(
            "{origin}: [contracts] min_samples = {} must be at least 10 and at most [shadow] window ({}); using {}",
            contracts.min_samples,
            shadow.window,
            Contracts::default().min_samples.min(shadow.window)
        ));
        contracts.min_samples = Contracts::default().min_samples.min(shadow.window);
    }
    Ok((
        MonitorConfig {
            rules,
            shadow,
            contracts,
        },
        errors,
    ))
}

/// The built-in configuration.
pub fn builtin() -> MonitorConfig {
    let (config, errors) = parse(DEFAULT, "the built-in monitor configuration");
    debug_assert!(errors.is_empty(), "{errors:?}");
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_keep_their_defaults_with_one_line_each() {
        let (c, errors) = parse(
            "[shadow]\nevery = 10\nqueue = 0\n[contracts]\naction = \"rollback\"\ntolerance = 2\n",
            "m.toml",
        );
        assert_eq!(c.shadow.every, 10);
        assert_eq!(c.shadow.queue, 64);
        assert_eq!(c.contracts.action, Action::Rollback);
        assert_eq!(c.contracts.tolerance, 0.1);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("m.toml: [shadow] queue = 0"),
            "{errors:?}"
        );
        let (_, errors) = parse("[contracts]\naction = \"panic\"\n", "m.toml");
        assert!(errors[0].starts_with("m.toml: line 2:"), "{errors:?}");
        // A file that cannot be read, or is not TOML, is refused whole.
        let unreadable = read(Path::new("/nonexistent/monitor.toml")).unwrap_err();
        assert!(
            unreadable.contains("/nonexistent/monitor.toml")
                && unreadable.contains("--monitor-config"),
            "{unreadable}"
        );
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("m.toml");
        std::fs::write(&broken, "[contracts]\naction = \"panic\"\n").unwrap();
        let refused = read(&broken).unwrap_err();
        assert!(refused.contains("m.toml: line 2:"), "{refused}");
    }

    #[test]
    fn the_builtin_configuration_is_clean() {
        let (c, errors) = parse(DEFAULT, "builtin");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.contracts.action, Action::Alert);
        assert!(c.rules.iter().any(|r| r.name == "ShadowMismatch"));
        assert!(c.rules.iter().any(|r| r.name == "ContractBroken"));
    }
}
