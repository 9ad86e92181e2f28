//! One module per command: parse (in `crate::args`), call the host, node and instruments,
//! print.

pub mod bench;
pub mod chain;
pub mod gates;
pub mod node;
pub mod plugin;
pub mod plugins;
pub mod profile;
pub mod run;
