//! Configuration: profiles of enabled plugins, per-plugin settings, host settings, and
//! imported gate files.
//!
//! Precedence, lowest first: a manifest's `default_enabled`, the selected profile, gates
//! imported with `gates import`, `--enable`/`--disable` on the command line.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    resolve::{Request, Resolution, Source},
    slot::BreakerConfig,
};

/// The built-in configuration, used when no file is given.
pub const DEFAULT_CONFIG: &str = include_str!("../default-config.toml");

/// A configuration or gates file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    host: HostSection,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HostSection {
    #[serde(deserialize_with = "positive")]
    init_timeout_ms: u64,
    /// How long any other step of a load that runs plugin code may take: opening the
    /// library (its constructors), each slot factory, each self-test.
    #[serde(deserialize_with = "positive")]
    step_timeout_ms: u64,
    breaker: BreakerConfig,
    /// Whether a manifest may name a library outside the plugin directory (a path with
    /// directories in it, or an absolute one). Off: the plugin directory is what the user
    /// trusts, and a manifest in it must not load code from elsewhere.
    allow_external_libraries: bool,
    /// Whether every manifest must pin its library's sha256 (one that does not is refused,
    /// the refusal giving the library's hash).
    require_sha256: bool,
    /// Plugins to load each in a child process of its own (`crate::isolate`): a crash in
    /// one is a failed call, answered below, not the end of the node.
    isolate: Vec<String>,
    /// How long an isolated plugin's process may take to answer one call.
    #[serde(deserialize_with = "positive")]
    isolated_call_timeout_ms: u64,
}

/// A count or a time in milliseconds that 0 would make useless (every step timing out, a
/// breaker open before any failure): 1 or more.
pub(crate) fn positive<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + PartialEq + Default,
{
    let v = T::deserialize(d)?;
    if v == T::default() {
        return Err(serde::de::Error::custom(
            "0 leaves nothing to work with (every deadline missed, or a breaker open before any failure); give 1 or more",
        ));
    }
    Ok(v)
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            init_timeout_ms: millis(crate::loader::Deadlines::default().init),
            step_timeout_ms: millis(crate::loader::Deadlines::default().step),
            breaker: BreakerConfig::default(),
            allow_external_libraries: false,
            require_sha256: false,
            isolate: Vec::new(),
            isolated_call_timeout_ms: 10_000,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A named set of gate settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, try_from = "ProfileToml")]
pub struct Profile {
    /// Plugins to enable.
    #[serde(default)]
    pub enable: Vec<String>,
    /// Plugins to disable (overrides their manifest default).
    #[serde(default)]
    pub disable: Vec<String>,
    /// Disable every plugin this profile does not enable, whatever its manifest says.
    #[serde(default)]
    pub disable_all: bool,
    /// Settings handed to each plugin's `init`, by plugin name.
    #[serde(default)]
    pub plugins: BTreeMap<String, toml::Table>,
}

/// A profile as written, before the check that no plugin is both enabled and disabled by
/// it (which would leave the outcome to the order the lists are read in).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileToml {
    #[serde(default)]
    enable: Vec<String>,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    disable_all: bool,
    #[serde(default)]
    plugins: BTreeMap<String, toml::Table>,
}

impl TryFrom<ProfileToml> for Profile {
    type Error = String;

    fn try_from(p: ProfileToml) -> Result<Profile, String> {
        if let Some(both) = p.enable.iter().find(|n| p.disable.contains(n)) {
            return Err(format!(
                "`{both}` is in both `enable` and `disable` of this profile; keep it in one of them"
            ));
        }
        Ok(Profile {
            enable: p.enable,
            disable: p.disable,
            disable_all: p.disable_all,
            plugins: p.plugins,
        })
    }
}

/// A loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    file: ConfigFile,
    /// Where it came from, for messages: a path or `built-in defaults`.
    pub source: String,
}

impl Config {
    /// Reads `path`, or the built-in defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::parse(Path::new("built-in defaults"), DEFAULT_CONFIG),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    path: p.to_owned(),
                    line: None,
                    message: format!("cannot read configuration: {e}; give a readable file with --config (or DUBCHAIN_CONFIG), or neither for the built-in configuration"),
                })?;
                Config::parse(p, &text)
            }
        }
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let (line, message) = crate::manifest::toml_problem(text, &e);
            ConfigError {
                path: path.to_owned(),
                line,
                message,
            }
        })?;
        let b = file.host.breaker;
        if b.max_backoff_ms < b.backoff_ms {
            return Err(ConfigError {
                path: path.to_owned(),
                line: None,
                message: format!(
                    "[host.breaker] max_backoff_ms = {} is below backoff_ms = {}: the wait between probes could never grow to it; make max_backoff_ms at least backoff_ms",
                    b.max_backoff_ms, b.backoff_ms
                ),
            });
        }
        Ok(Config {
            file,
            source: path.display().to_string(),
        })
    }

    pub fn profile_names(&self) -> Vec<&str> {
        self.file.profiles.keys().map(String::as_str).collect()
    }

    pub fn profile(&self, name: &str) -> Result<&Profile, ConfigError> {
        self.file.profiles.get(name).ok_or_else(|| ConfigError {
            path: PathBuf::from(&self.source),
            line: None,
            message: match self.profile_names().as_slice() {
                [] => format!(
                    "no profile `{name}`: the file defines none; add a `[profiles.{name}]` table (its `enable` list may be empty)"
                ),
                names => format!(
                    "no profile `{name}` (profiles: {}); choose one of them with --profile (or DUBCHAIN_PROFILE)",
                    names.join(", ")
                ),
            },
        })
    }

    pub fn init_timeout(&self) -> Duration {
        Duration::from_millis(self.file.host.init_timeout_ms)
    }

    /// See `[host] step_timeout_ms`.
    pub fn step_timeout(&self) -> Duration {
        Duration::from_millis(self.file.host.step_timeout_ms)
    }

    pub fn breaker(&self) -> BreakerConfig {
        self.file.host.breaker
    }

    /// See `[host] isolate`.
    pub fn isolate(&self) -> std::collections::BTreeSet<String> {
        self.file.host.isolate.iter().cloned().collect()
    }

    /// See `[host] isolated_call_timeout_ms`.
    pub fn isolated_call_timeout(&self) -> Duration {
        Duration::from_millis(self.file.host.isolated_call_timeout_ms)
    }

    /// See `[host] require_sha256`.
    pub fn require_sha256(&self) -> bool {
        self.file.host.require_sha256
    }

    /// Where manifests may take their libraries from (`[host] allow_external_libraries`).
    pub fn libraries(&self) -> crate::manifest::Libraries {
        if self.file.host.allow_external_libraries {
            crate::manifest::Libraries::Anywhere
        } else {
            crate::manifest::Libraries::InPluginDir
        }
    }

    /// The requests of profile `name`. `all_plugins` is needed for `disable_all`.
    pub fn requests(&self, name: &str, all_plugins: &[&str]) -> Result<Vec<Request>, ConfigError> {
        let profile = self.profile(name)?;
        let source = Source::Profile {
            profile: name.to_owned(),
            file: self.source.clone(),
        };
        let mut out = Vec::new();
        if profile.disable_all {
            out.extend(all_plugins.iter().map(|n| Request {
                name: (*n).to_owned(),
                enable: false,
                source: source.clone(),
            }));
        }
        out.extend(profile.disable.iter().map(|n| Request {
            name: n.clone(),
            enable: false,
            source: source.clone(),
        }));
        out.extend(profile.enable.iter().map(|n| Request {
            name: n.clone(),
            enable: true,
            source: source.clone(),
        }));
        Ok(out)
    }

    /// Where the settings table of `plugin` in profile `name` is, if it has one:
    /// `[profiles.NAME.plugins.PLUGIN] in FILE`.
    pub fn plugin_table(&self, name: &str, plugin: &str) -> Option<String> {
        self.file
            .profiles
            .get(name)?
            .plugins
            .get(plugin)
            .map(|_| format!("[profiles.{name}.plugins.{plugin}] in {}", self.source))
    }

    /// The settings table of `plugin` in profile `name`, as TOML text (empty if none).
    pub fn plugin_config(&self, name: &str, plugin: &str) -> String {
        self.file
            .profiles
            .get(name)
            .and_then(|p| p.plugins.get(plugin))
            .map(|t| toml::to_string(t).expect("a TOML table serialises"))
            .unwrap_or_default()
    }
}

/// The format tag of gates files.
pub const GATES_FORMAT: &str = "dubchain-gates/1";

/// The effective gate settings, as `gates export` writes them and `gates import` reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatesFile {
    pub format: String,
    /// The profile they were exported from.
    pub profile: String,
    /// The feature-set id of the exported plan.
    pub feature_set_id: String,
    pub gates: BTreeMap<String, Gate>,
}

/// One plugin's gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    pub enabled: bool,
    /// The plugin version the setting was exported for.
    pub version: String,
    /// Why it was on or off when exported (informational; ignored on import).
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl GatesFile {
    /// The gates of a resolution.
    pub fn from_resolution(
        profile: &str, resolution: &Resolution, versions: &BTreeMap<String, String>,
    ) -> GatesFile {
        let gates = resolution
            .decisions
            .iter()
            .map(|(name, d)| {
                let gate = Gate {
                    enabled: d.enabled,
                    version: versions.get(name).cloned().unwrap_or_default(),
                    reasons: d.reasons.iter().map(ToString::to_string).collect(),
                };
                (name.clone(), gate)
            })
            .collect();
        GatesFile {
            format: GATES_FORMAT.to_owned(),
            profile: profile.to_owned(),
            feature_set_id: resolution.feature_set_id.clone(),
            gates,
        }
    }

    pub fn read(path: &Path) -> Result<GatesFile, ConfigError> {
        let err = |line, message| ConfigError {
            path: path.to_owned(),
            line,
            message,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(None, format!("cannot read gates file: {e}")))?;
        let file: GatesFile = serde_json::from_str(&text).map_err(|e| {
            err(
                Some(e.line()),
                format!(
                    "not a gates file: {}",
                    crate::manifest::one_line(&e.to_string())
                ),
            )
        })?;
        if file.format != GATES_FORMAT {
            return Err(err(
                None,
                format!("format is `{}`, expected `{GATES_FORMAT}`", file.format),
            ));
        }
        Ok(file)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut bytes = serde_json::to_vec_pretty(self).expect("serialisable");
        bytes.push(b'\n');
        crate::files::write_atomic(path, &bytes)
    }

    /// The gates as requests of source `gates imported from <path>`.
    pub fn requests(&self, path: &Path) -> Vec<Request> {
        let source = Source::Imported {
            file: path.display().to_string(),
        };
        self.gates
            .iter()
            .map(|(name, g)| Request {
                name: name.clone(),
                enable: g.enabled,
                source: source.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_leave_nothing_to_work_with_are_refused_with_their_line() {
        for (text, line) in [
            ("[host]\nstep_timeout_ms = 0\n", Some(2)),
            ("[host]\ninit_timeout_ms = 0\n", Some(2)),
            ("[host]\nisolated_call_timeout_ms = 0\n", Some(2)),
            ("[host.breaker]\nfailure_threshold = 0\n", Some(2)),
            ("[host.breaker]\nbackoff_ms = 0\n", Some(2)),
            (
                "[host.breaker]\nbackoff_ms = 5000\nmax_backoff_ms = 10\n",
                None,
            ),
        ] {
            let e = Config::parse(Path::new("c.toml"), text)
                .err()
                .unwrap_or_else(|| panic!("accepted: {text}"));
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(
                e.message.contains("give 1 or more") || e.message.contains("at least backoff_ms"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_plugin_both_enabled_and_disabled_by_a_profile_is_refused() {
        let text = "[profiles.p]\nenable = [\"a\", \"b\"]\ndisable = [\"b\"]\n";
        let e = Config::parse(Path::new("c.toml"), text).expect_err("refused");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(
            e.message.contains("`b` is in both `enable` and `disable`"),
            "{e}"
        );
        let text = "[profiles.p]\nenable = [\"a\"]\ndisable = [\"b\"]\n";
        let c = Config::parse(Path::new("c.toml"), text).expect("accepted");
        assert_eq!(c.profile("p").unwrap().disable, ["b"]);
    }

    #[test]
    fn a_partial_breaker_table_keeps_the_other_defaults() {
        let text = "[host.breaker]\nfailure_threshold = 5\n";
        let breaker = Config::parse(Path::new("c.toml"), text).unwrap().breaker();
        let defaults = BreakerConfig::default();
        assert_eq!(breaker.failure_threshold, 5);
        assert_eq!(
            (breaker.backoff_ms, breaker.max_backoff_ms),
            (defaults.backoff_ms, defaults.max_backoff_ms)
        );
    }
}
