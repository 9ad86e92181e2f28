//! The optimization catalogue, machine-readable: every row of `shared/CATALOGUE.md` (the
//! seed's 25 and this project's own), with its slot, its goal and the bench case the goal is
//! judged on. The one source of goals: `bench`, its reports, `run` and the criterion benches
//! read it, and show a manifest's promise (`[contract] min_speedup`) beside it, never in its
//! place. The file is `host/core/catalogue.toml`, embedded at build time.

use std::sync::OnceLock;

use serde::Deserialize;

/// The catalogue file, as shipped.
pub const SOURCE: &str = include_str!("../catalogue.toml");

/// One optimization.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// The plugin's name: `crypto_parallel_verification`, ...
    pub id: String,
    pub subsystem: String,
    /// The slot the plugin provides.
    pub slot: String,
    /// The goal as a ratio (baseline time / plugin time), the catalogue's headline figure.
    pub goal: f64,
    /// The goal in the catalogue's words (some goals have more than one figure).
    pub goal_text: String,
    /// The bench case (`dubchain-perf bench`) the goal ratio is judged on, where the suite has
    /// one.
    #[serde(default)]
    pub case: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    row: Vec<Row>,
}

/// Every row, in the catalogue's order.
pub fn rows() -> &'static [Row] {
    static ROWS: OnceLock<Vec<Row>> = OnceLock::new();
    ROWS.get_or_init(|| {
        toml::from_str::<File>(SOURCE)
            .unwrap_or_else(|e| panic!("host/core/catalogue.toml is not a valid catalogue: {e}"))
            .row
    })
}

/// The row of plugin `id`.
pub fn row(id: &str) -> Option<&'static Row> {
    rows().iter().find(|r| r.id == id)
}

/// The goal that applies to plugin `plugin` on bench case `case`: the row's goal ratio when
/// the case is the one the row names.
pub fn goal_for(plugin: &str, case: &str) -> Option<f64> {
    row(plugin)
        .filter(|r| r.case.as_deref() == Some(case))
        .map(|r| r.goal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_parses_and_names_each_row_once() {
        let rows = rows();
        assert_eq!(
            rows.len(),
            26,
            "the seed's 25 rows and storage_incremental_root"
        );
        let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), rows.len(), "ids are unique");
        assert!(rows.iter().all(|r| r.goal > 0.0 && !r.goal_text.is_empty()));
    }

    #[test]
    fn every_row_with_a_slot_in_the_table_names_a_real_slot() {
        let known: Vec<&str> = dubchain_plugin_api::slots::ALL
            .iter()
            .map(|s| s.id)
            .collect();
        for r in rows() {
            assert!(
                known.contains(&r.slot.as_str()),
                "{}: no slot {}",
                r.id,
                r.slot
            );
        }
    }
}
