//! `dubchain-perf`: the command line of the DubChain optimization host. A thin binary:
//! [`args`] parses, [`commands`] call the host (`dubchain-host`), the node
//! (`dubchain-node`) and the instruments (`dubchain-instruments`) and print what they
//! return; [`print`] draws tables and progress bars. No logic lives here that a test or
//! another front end would need.

mod args;
mod commands;
mod print;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use dubchain_host::session::Session;

use args::{ChainCmd, Cli, Command, GatesCmd, MonitorCmd, PluginCmd, PluginsCmd};

/// Counts the host's heap allocations for `bench` and `profile`.
#[global_allocator]
static ALLOC: dubchain_host::alloc_count::CountingAlloc =
    dubchain_host::alloc_count::COUNTING_ALLOC;

/// A closed standard output (`dubchain-perf run | head`) ends the process quietly, as
/// SIGPIPE ends other Unix tools. Rust ignores SIGPIPE so that a write to a closed socket is
/// an error and not the node's death, which leaves `println!` to panic instead: this hook
/// turns that one panic into exit status 141 (128 + SIGPIPE) and leaves every other to the
/// default hook.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    // `DUBCHAIN_LOG` (tracing's filter syntax) sets what is logged; unset, warnings and
    // errors. A filter that does not parse is said, not silently replaced.
    let filter = match std::env::var("DUBCHAIN_LOG") {
        Err(_) => tracing_subscriber::EnvFilter::new("warn"),
        Ok(text) => tracing_subscriber::EnvFilter::try_new(&text).unwrap_or_else(|e| {
            eprintln!(
                "warning: DUBCHAIN_LOG={text}: {e}; logging warnings and errors only (a level such as `info`, or `dubchain_host=debug`)"
            );
            tracing_subscriber::EnvFilter::new("warn")
        }),
    };
    // Colours only for a terminal: a log redirected to a file or a pipe stays plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            if e.downcast_ref::<Refused>().is_some() || e.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `e` and its causes on one line, `a: b: c`, leaving out a cause whose message its
/// error already shows (many errors print their source in their own message).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if line.contains(&message) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&message);
    }
    // The last guard: a message that quotes input back may hold a line break.
    dubchain_host::manifest::one_line(&line)
}

/// An error in what the user handed in (the configuration, a profile, the plugin directory's
/// manifests and gates): exit code 2, as clap's own refusals of arguments. Displays as the
/// error it wraps.
#[derive(Debug)]
struct Refused(dubchain_host::config::ConfigError);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// An argument a command cannot use, found past clap's own checks (a workload name, an
/// output directory): exit code 2, as [`Refused`].
#[derive(Debug)]
pub(crate) struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn run(cli: Cli) -> Result<ExitCode> {
    use commands::*;
    if let Some(both) = cli
        .global
        .enable
        .iter()
        .find(|e| cli.global.disable.contains(e))
    {
        return Err(BadInput(format!(
            "--enable {both} and --disable {both} both given; keep one of them"
        ))
        .into());
    }
    let global_args = cli.global.child_args();
    let options = cli.global.session_options();
    let open = || Session::open(options.clone()).map_err(Refused);
    match cli.command {
        Command::Plugins(PluginsCmd::List { load, verbose }) => {
            plugins::list(&open()?, load, verbose)
        }
        Command::Plugins(PluginsCmd::Plan) => plugins::plan(&open()?),
        Command::Plugins(PluginsCmd::Why { name }) => plugins::why(&open()?, &name),
        Command::Gates(GatesCmd::Export { file }) => gates::export(&open()?, &file),
        Command::Gates(GatesCmd::Import { file }) => gates::import(options, &file),
        Command::Gates(GatesCmd::Reset) => gates::reset(&options),
        Command::Run(args) => run::run(&open()?, &args, global_args),
        Command::Chain(ChainCmd::Produce { chain, seed }) => chain::produce(&open()?, &chain, seed),
        Command::Chain(ChainCmd::Check { chain, seed }) => chain::check(&open()?, &chain, seed),
        Command::Chain(ChainCmd::CommitRace {
            data_dir,
            committers,
            commits,
            check,
        }) => chain::commit_race(&open()?, &data_dir, committers, commits, check),
        Command::Chain(ChainCmd::Migrate { data_dir, codec }) => {
            chain::migrate(&open()?, &data_dir, &codec)
        }
        Command::Plugin(PluginCmd::New {
            name,
            slot,
            dir,
            source_root,
        }) => plugin::new(&name, &slot, &dir, source_root),
        Command::Plugin(PluginCmd::Verify { path, library }) => {
            plugin::verify(&path, library.as_deref())
        }
        Command::Plugin(PluginCmd::VerifyChild {
            manifest,
            library,
            quick_ratio,
        }) => plugin::verify_child(&manifest, &library, quick_ratio.as_deref()),
        Command::Plugin(PluginCmd::Serve {
            manifest,
            init_timeout_ms,
            step_timeout_ms,
        }) => plugin::serve(
            &manifest,
            dubchain_host::loader::Deadlines {
                init: std::time::Duration::from_millis(init_timeout_ms),
                step: std::time::Duration::from_millis(step_timeout_ms),
            },
        ),
        Command::Node(args) => node::node(&open()?, &args),
        Command::Cluster(args) => node::cluster(&args, global_args),
        Command::Monitor(MonitorCmd::Metrics) => node::metrics(),
        Command::Monitor(MonitorCmd::Rules { monitor_config }) => {
            node::rules(monitor_config.as_deref())
        }
        Command::Monitor(MonitorCmd::Dashboard) => node::dashboard(),
        Command::Bench(args) => bench::bench(&open()?, &args, global_args),
        Command::BenchChild(args) => bench::child(&open()?, &args),
        Command::Profile(args) => profile::profile(&open()?, &args, global_args),
    }
}
