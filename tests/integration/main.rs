//! Integration tests of the host: one binary, one module per concern.

mod authoring;
mod contracts;
mod differential;
mod fallback;
mod fuzz;
mod hot_reload;
mod hot_swap;
mod loading;
mod manifests;
mod measuring;
mod node;
mod resolver;
