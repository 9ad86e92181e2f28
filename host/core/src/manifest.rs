//! Plugin manifests: the TOML file that ships next to each plugin library.
//!
//! The serde types here ([`ManifestFile`] and friends) are the stable, user-facing format,
//! documented in `docs/manifest.md`. They are converted once, explicitly, into [`Manifest`],
//! the validated form the resolver and loader work with. Unknown keys are errors, and every
//! error names the file and, where TOML can say, the line.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use semver::{Version, VersionReq};
use serde::Deserialize;
use toml::Spanned;

/// A manifest that was read and validated.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: Version,
    pub description: String,
    pub subsystem: String,
    /// Absolute path of the manifest file itself.
    pub path: PathBuf,
    /// Absolute path of the library the manifest describes.
    pub library: PathBuf,
    /// Lowercase hex sha256 the library must have, when pinned.
    pub sha256: Option<String>,
    pub api: VersionReq,
    pub provides: Vec<Provide>,
    pub depends: Vec<Depend>,
    pub conflicts: Vec<Conflict>,
    /// Host slots the plugin calls through host services ([`dubchain_plugin_api::services`]).
    pub uses: Vec<Use>,
    /// Plugins this one works better with (Debian's `Recommends`): `plugins plan` suggests
    /// them; their absence is never a problem.
    pub recommends: Vec<Recommend>,
    pub ordering: Ordering,
    pub risk: Risk,
    pub contract: Option<Contract>,
    pub default_enabled: bool,
}

impl Manifest {
    /// Whether the plugin provides `slot`.
    pub fn provides_slot(&self, slot: &str) -> bool {
        self.provides.iter().any(|p| p.slot == slot)
    }
}

/// A host slot a plugin calls, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub slot: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provide {
    pub slot: String,
    pub version: u32,
}

/// An edge of the gate graph: another plugin (by name, in a version range) this one
/// depends on or conflicts with, and why.
#[derive(Debug, Clone)]
pub struct Edge {
    pub name: String,
    pub version: VersionReq,
    pub reason: String,
}

/// A plugin this one needs enabled.
pub type Depend = Edge;
/// A plugin this one must not be enabled with.
pub type Conflict = Edge;
/// A plugin this one works better with.
pub type Recommend = Edge;

/// Where a layer sits in the stack of a layered slot, relative to other layers.
#[derive(Debug, Clone, Default)]
pub struct Ordering {
    /// Layers this one sits above (closer to the caller than they are).
    pub above: Vec<String>,
    /// Layers this one sits below.
    pub below: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// The performance the plugin promises against the baseline.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// Minimum baseline time / plugin time on `workload`.
    pub min_speedup: f64,
    /// The workload the promise is about, in words.
    pub workload: String,
    /// The `dubchain-perf bench` case the promise is judged on, where the slot has several
    /// (for example `block_execution_low`); by default the slot's contract case.
    #[serde(default)]
    pub case: Option<String>,
}

/// A manifest that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for ManifestError {}

// ---------------------------------------------------------------------------------------------
// The file format.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    pub name: Spanned<String>,
    pub version: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub subsystem: String,
    pub library: String,
    pub sha256: Option<Spanned<String>>,
    pub api: Spanned<String>,
    pub provides: Spanned<Vec<ProvideFile>>,
    #[serde(default)]
    pub depends: Vec<EdgeFile>,
    #[serde(default)]
    pub conflicts: Vec<EdgeFile>,
    #[serde(default)]
    pub uses: Vec<UseFile>,
    #[serde(default)]
    pub recommends: Vec<EdgeFile>,
    #[serde(default)]
    pub ordering: OrderingFile,
    pub risk: Risk,
    pub contract: Option<ContractFile>,
    #[serde(default)]
    pub default_enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractFile {
    pub min_speedup: Spanned<f64>,
    pub workload: String,
    #[serde(default)]
    pub case: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvideFile {
    pub slot: String,
    pub version: u32,
}

/// A `[[uses]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseFile {
    pub slot: String,
    pub reason: String,
}

/// A `[[depends]]`, `[[conflicts]]` or `[[recommends]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeFile {
    /// Spanned: an entry's error points at its name.
    pub name: Spanned<String>,
    #[serde(default = "any_version")]
    pub version: String,
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderingFile {
    #[serde(default)]
    pub above: Vec<String>,
    #[serde(default)]
    pub below: Vec<String>,
}

fn any_version() -> String {
    "*".to_owned()
}

/// Reads and validates the manifest at `path`.
pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
        path: path.to_owned(),
        line: None,
        message: format!("cannot read manifest: {e}"),
    })?;
    parse(path, &text)
}

/// Parses and validates manifest `text`, reporting errors against `path`.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let err = |line: Option<usize>, message: String| ManifestError {
        path: path.to_owned(),
        line,
        message,
    };
    let file: ManifestFile = toml::from_str(text).map_err(|e| {
        let (line, message) = toml_problem(text, &e);
        err(line, message)
    })?;
    // Values that parse as TOML but are wrong: their line from the value's span.
    let at =
        |span: std::ops::Range<usize>| (span.end > span.start).then(|| line_of(text, span.start));
    let spanned = |v: &Spanned<String>| (v.get_ref().clone(), at(v.span()));

    let (name, name_line) = spanned(&file.name);
    if !is_identifier(&name) {
        return Err(err(
            name_line,
            format!("name `{name}` must be lowercase letters, digits and `_`"),
        ));
    }
    let (v, line) = spanned(&file.version);
    let version =
        Version::parse(&v).map_err(|e| err(line, format!("version `{v}` is not semver: {e}")))?;
    let (a, line) = spanned(&file.api);
    let api = VersionReq::parse(&a)
        .map_err(|e| err(line, format!("api `{a}` is not a version requirement: {e}")))?;
    if let Some(hash) = &file.sha256 {
        let (h, line) = spanned(hash);
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(line, "sha256 must be 64 hex digits".to_owned()));
        }
    }
    if file.provides.get_ref().is_empty() {
        return Err(err(
            at(file.provides.span()),
            "a plugin must provide at least one slot".to_owned(),
        ));
    }
    let contract = match file.contract {
        Some(c) => {
            let min_speedup = *c.min_speedup.get_ref();
            if !(min_speedup.is_finite() && min_speedup > 0.0) {
                return Err(err(
                    at(c.min_speedup.span()),
                    "contract.min_speedup must be a positive number".to_owned(),
                ));
            }
            Some(Contract {
                min_speedup,
                workload: c.workload,
                case: c.case,
            })
        }
        None => None,
    };
    // An entry's version error points at the entry (its name).
    let req = |what: &str, name: &Spanned<String>, v: &str| {
        let (name, line) = spanned(name);
        VersionReq::parse(v).map_err(|e| {
            err(
                line,
                format!("{what} `{name}`: version `{v}` is not a version requirement: {e}"),
            )
        })
    };
    let edges = |what: &str, entries: &[EdgeFile]| {
        entries
            .iter()
            .map(|e| {
                Ok(Edge {
                    name: e.name.get_ref().clone(),
                    version: req(what, &e.name, &e.version)?,
                    reason: e.reason.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let depends = edges("depends", &file.depends)?;
    let conflicts = edges("conflicts", &file.conflicts)?;
    let recommends = edges("recommends", &file.recommends)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(Manifest {
        library: dir.join(library_file_name(&file.library)),
        name,
        version,
        description: file.description,
        subsystem: file.subsystem,
        path: path.to_owned(),
        sha256: file.sha256.map(|h| h.into_inner().to_ascii_lowercase()),
        api,
        provides: file
            .provides
            .into_inner()
            .into_iter()
            .map(|p| Provide {
                slot: p.slot,
                version: p.version,
            })
            .collect(),
        depends,
        conflicts,
        uses: file
            .uses
            .into_iter()
            .map(|u| Use {
                slot: u.slot,
                reason: u.reason,
            })
            .collect(),
        recommends,
        ordering: Ordering {
            above: file.ordering.above,
            below: file.ordering.below,
        },
        risk: file.risk,
        contract,
        default_enabled: file.default_enabled,
    })
}

/// A parser's message on one line: TOML's can span several (`invalid string` then
/// `expected ...`), and a message may quote the input back (a field name holding a line
/// break or a NUL), and every refusal is one line, so any other control character is
/// shown escaped.
pub fn one_line(message: &str) -> String {
    message
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Maps a library base name (`crypto_parallel_verification`) to this platform's file name
/// (`libcrypto_parallel_verification.so`); a name with an extension is taken as a file name.
pub fn library_file_name(library: &str) -> String {
    if Path::new(library).extension().is_some() {
        library.to_owned()
    } else {
        format!(
            "{}{library}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )
    }
}

/// The one name in `names` close enough to `name` to be what a typo of it meant (within
/// an edit or two, more for long names), for a "did you mean" beside an unknown name.
pub fn closest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let most = (name.len() / 6).clamp(1, 3);
    let mut near: Vec<(usize, &str)> = names
        .into_iter()
        .map(|n| (strsim::damerau_levenshtein(name, n), n))
        .filter(|&(d, _)| d <= most)
        .collect();
    near.sort();
    if near.first().is_some_and(|&(d, _)| d == 0) {
        return None;
    }
    match near.as_slice() {
        [(d, n), rest @ ..] if rest.first().is_none_or(|(d2, _)| d2 > d) => Some(n),
        _ => None,
    }
}

/// ` (did you mean `X`?)` when [`closest`] finds one, else nothing.
pub fn did_you_mean<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, names)
        .map(|n| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

pub(crate) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Where a TOML file `text` failed to deserialize, and why, for a one-line error: the line
/// of the error's span, and the message, led by the key whose value is wrong where the span
/// points at a value (`step_timeout_ms`: invalid type: ..., which toml's own message leaves
/// out).
pub fn toml_problem(text: &str, e: &toml::de::Error) -> (Option<usize>, String) {
    let message = one_line(e.message());
    let Some(span) = e.span() else {
        return (None, message);
    };
    let start = span.start.min(text.len());
    let before = &text[text[..start].rfind('\n').map_or(0, |i| i + 1)..start];
    // The key of the value the span starts at: the text between the last separator and
    // the `=` before it (an inline table's or a plain assignment's key).
    let key = before.rfind('=').map(|eq| {
        let k = &before[..eq];
        k[k.rfind([',', '{']).map_or(0, |i| i + 1)..].trim()
    });
    let message = match key {
        Some(k) if !k.is_empty() && !message.contains(&format!("`{k}`")) => {
            format!("`{k}`: {message}")
        }
        _ => message,
    };
    (Some(line_of(text, start)), message)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The line of top-level key `key` in the manifest at `path` (from its value's span).
fn key_line(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: BTreeMap<String, Spanned<toml::Value>> = toml::from_str(&text).ok()?;
    Some(line_of(&text, table.get(key)?.span().start))
}

/// What a directory scan found: the manifests that read, and the ones that did not.
#[derive(Debug, Default)]
pub struct Discovery {
    pub manifests: Vec<Manifest>,
    pub errors: Vec<ManifestError>,
}

/// Where a directory's manifests may take their libraries from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Libraries {
    /// Only next to the manifest (`library` a file name): the default.
    #[default]
    InPluginDir,
    /// Anywhere the manifest says (`[host] allow_external_libraries = true`).
    Anywhere,
}

/// Reads every `*.toml` manifest in `dir` (not recursive), in file-name order; a manifest
/// whose library is outside `dir` is an error.
pub fn discover(dir: &Path) -> Discovery {
    discover_with(dir, Libraries::InPluginDir)
}

/// Like [`discover`], with `libraries` saying whether a library may be outside `dir`.
pub fn discover_with(dir: &Path, libraries: Libraries) -> Discovery {
    let mut out = Discovery::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            out.errors.push(ManifestError {
                path: dir.to_owned(),
                line: None,
                message: format!(
                    "cannot read plugin directory: {e}; no plugin is loaded and every slot runs on its baseline (give the directory your plugins are in)"
                ),
            });
            return out;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        match read(&path) {
            Ok(m) => {
                if libraries == Libraries::InPluginDir && m.library.parent() != m.path.parent() {
                    out.errors.push(ManifestError {
                        path: path.clone(),
                        line: key_line(&path, "library"),
                        message: format!(
                            "library {} is outside the plugin directory; put the library next to the manifest (and `library` its file name), or set `allow_external_libraries = true` in the configuration's [host] table",
                            m.library.display()
                        ),
                    });
                    continue;
                }
                if let Some(first) = seen.get(&m.name) {
                    out.errors.push(ManifestError {
                        path: path.clone(),
                        line: key_line(&path, "name"),
                        message: format!(
                            "a second manifest for plugin `{}` (the first is {}); keep one version in the directory",
                            m.name,
                            first.display()
                        ),
                    });
                    continue;
                }
                seen.insert(m.name.clone(), path);
                out.manifests.push(m);
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{closest, toml_problem};

    #[test]
    fn a_typo_finds_the_one_name_it_is_close_to() {
        let names = [
            "crypto_verification_caching",
            "crypto_parallel_verification",
            "top",
            "tip",
        ];
        for (typo, meant) in [
            (
                "crypto_verification_cachin",
                Some("crypto_verification_caching"),
            ),
            (
                "crypto_verfication_caching",
                Some("crypto_verification_caching"),
            ),
            (
                "crytpo_parallel_verification",
                Some("crypto_parallel_verification"),
            ),
            ("topp", Some("top")),
            // As near to two names: no guess.
            ("tap", None),
            // Too far from any.
            ("storage_cache", None),
            // The name itself is not a typo.
            ("top", None),
        ] {
            assert_eq!(closest(typo, names), meant, "{typo}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        timeout_ms: Option<u64>,
        labels: Option<std::collections::BTreeMap<String, u64>>,
    }

    fn problem(text: &str) -> (Option<usize>, String) {
        toml_problem(text, &toml::from_str::<File>(text).unwrap_err())
    }

    #[test]
    fn a_toml_problem_names_the_line_and_the_key_of_a_wrong_value() {
        let (line, message) = problem("\ntimeout_ms = \"x\"\n");
        assert_eq!(line, Some(2));
        assert!(
            message.starts_with("`timeout_ms`: invalid type: string \"x\""),
            "{message}"
        );
        // Inside an inline table: the key of the value, not the table's.
        let (line, message) = problem("labels = { a = 1, b = \"x\" }\n");
        assert_eq!(line, Some(1));
        assert!(message.starts_with("`b`: "), "{message}");
    }

    #[test]
    fn a_toml_problem_at_the_start_of_a_line_is_on_that_line_and_names_its_key_once() {
        let (line, message) = problem("timeout_ms = 5\nnope = 1\n");
        assert_eq!(line, Some(2));
        assert_eq!(message.matches("`nope`").count(), 1, "{message}");
    }
}
