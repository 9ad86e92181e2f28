//! A plugin's settings: its table of the host configuration (the TOML text `init` and each
//! factory get), parsed into the plugin's own type and checked, with refusals that name the
//! key, the value and what would be accepted.

use std::{fmt::Display, ops::RangeInclusive};

use serde::de::DeserializeOwned;

use crate::PluginError;

/// Declares a plugin's `Settings`: its table of the host configuration, read with
/// [`parse`], an unknown key refused and a key left out taking its default, each field
/// written once with its default beside it. The plugin crate depends on `serde` (the
/// derive is serde's).
///
/// ```ignore
/// dubchain_plugin_api::declare_settings! {
///     /// Shards of the per-height tallies (1 to 1024).
///     shards: usize = 16,
/// }
/// ```
#[macro_export]
macro_rules! declare_settings {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $default:expr),+ $(,)?) => {
        /// Settings, from the plugin's table in the host configuration.
        #[derive(Debug, Clone, ::serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Settings {
            $($(#[$doc])* pub $field: $ty,)+
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $($field: $default,)+ }
            }
        }
    };
}

/// `config` parsed into `S` (an unknown or mistyped key is refused if `S` says so, e.g.
/// with `#[serde(deny_unknown_fields)]`).
pub fn parse<S: DeserializeOwned>(config: &str) -> Result<S, PluginError> {
    toml::from_str(config).map_err(|e| {
        // TOML's messages span several lines; a refusal is one, with the line it is on.
        let message = e.message().trim().replace('\n', " ");
        // A span of the whole table (an unknown or missing key) names no line.
        let line = e
            .span()
            .filter(|at| at.start > 0 || at.end < config.len())
            .map(|at| {
                let before = &config.as_bytes()[..at.start.min(config.len())];
                before.iter().filter(|&&b| b == b'\n').count() + 1
            });
        // The table is handed over re-serialised, so its line numbers are not the
        // configuration file's: the line itself names the key and the value.
        let text = |line: usize| config.lines().nth(line - 1).unwrap_or("").trim().to_owned();
        PluginError::invalid_input(match line {
            Some(line) => format!(
                "bad settings, line {line} of the plugin's table (`{}`): {message}",
                text(line)
            ),
            None => format!("bad settings: {message}"),
        })
    })
}

/// The `init` of a plugin that has no settings (`init: settings::none` in
/// [`export_plugin!`](crate::export_plugin)): an empty table is accepted, any key refused by
/// name, so a setting meant for this plugin is never silently ignored.
pub fn none(config: &str) -> Result<(), PluginError> {
    let table: toml::Table = parse(config)?;
    if table.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    Err(PluginError::invalid_input(format!(
        "this plugin has no settings, but its table sets {}; remove {} from the profile's table",
        keys.join(", "),
        if keys.len() == 1 { "it" } else { "them" }
    )))
}

/// `value` of setting `key` if it is at least `min`.
pub fn at_least<T: PartialOrd + Display>(key: &str, value: T, min: T) -> Result<T, PluginError> {
    if value < min {
        return Err(PluginError::invalid_input(format!(
            "{key} = {value}: at least {min}"
        )));
    }
    Ok(value)
}

/// `value` of setting `key` if it lies in `range`.
pub fn within<T: PartialOrd + Display>(
    key: &str, value: T, range: RangeInclusive<T>,
) -> Result<T, PluginError> {
    if !range.contains(&value) {
        return Err(PluginError::invalid_input(format!(
            "{key} = {value}: from {} to {}",
            range.start(),
            range.end()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct S {
        #[allow(dead_code)]
        n: u32,
    }

    #[test]
    fn refusals_are_one_line_and_name_the_key() {
        let e = parse::<S>("m = 1").unwrap_err().to_string();
        assert!(e.contains("unknown field `m`") && !e.contains('\n'), "{e}");
        let e = parse::<S>("n = 1\nn = = 2").unwrap_err().to_string();
        assert!(
            e.contains("line 2 of the plugin's table (`n = = 2`)"),
            "{e}"
        );
        let e = parse::<S>("n = \"x\"").unwrap_err().to_string();
        assert!(
            e.contains("(`n = \"x\"`)"),
            "the key and the value are named: {e}"
        );
        assert_eq!(parse::<S>("n = 3").unwrap().n, 3);
        let e = at_least("max_bytes", 100, 4096).unwrap_err().to_string();
        assert!(e.contains("max_bytes = 100: at least 4096"), "{e}");
        assert_eq!(at_least("max_bytes", 4096, 4096).unwrap(), 4096);
        let e = within("shards", 0, 1..=1024).unwrap_err().to_string();
        assert!(e.contains("shards = 0: from 1 to 1024"), "{e}");
        assert_eq!(within("shards", 1024, 1..=1024).unwrap(), 1024);
    }

    #[test]
    fn a_plugin_without_settings_refuses_any_key() {
        assert!(none("").is_ok() && none("\n# nothing\n").is_ok());
        let e = none("chunk = 32\nthreads = 2").unwrap_err().to_string();
        assert_eq!(
            e,
            "this plugin has no settings, but its table sets chunk, threads; remove them from the profile's table"
        );
        assert!(none("chunk = = 1").is_err());
    }
}
