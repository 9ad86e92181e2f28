//! One invocation's view of the world: configuration, discovered manifests, requests and
//! their resolution. Every command of `dubchain-perf` starts from a [`Session`].

use std::path::{Path, PathBuf};

use semver::Version;

use crate::{
    config::{Config, ConfigError, GatesFile},
    host::{ApplyReport, Host, HostOptions},
    manifest::{self, Manifest, ManifestError},
    resolve::{self, Problem, Request, Resolution, Source},
};

/// Where a session looks for things, and what the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    pub plugin_dir: PathBuf,
    /// `None`: the built-in configuration.
    pub config: Option<PathBuf>,
    pub profile: String,
    /// Imported gates live here as `gates.json`.
    pub state_dir: PathBuf,
    pub enable: Vec<String>,
    pub disable: Vec<String>,
    /// What a running node's monitor asked for since it started (admin API, rollbacks):
    /// a plugin and whether it is on, one entry a plugin; the last word on it.
    pub monitor: Vec<(String, bool)>,
}

impl SessionOptions {
    /// Records the monitor's word on `name`, replacing any it gave before.
    pub fn set_by_monitor(&mut self, name: &str, enable: bool) {
        self.monitor.retain(|(n, _)| n != name);
        self.monitor.push((name.to_owned(), enable));
    }
}

/// Configuration, manifests and resolution for one invocation.
pub struct Session {
    pub options: SessionOptions,
    pub config: Config,
    pub manifests: Vec<Manifest>,
    /// Manifests that could not be read; the session goes on without them.
    pub manifest_errors: Vec<ManifestError>,
    /// The imported gates in force, if any.
    pub imported: Option<(PathBuf, GatesFile)>,
    pub requests: Vec<Request>,
    pub resolution: Resolution,
}

/// The API version this host implements.
pub fn host_api_version() -> Version {
    Version::parse(dubchain_plugin_api::API_VERSION).expect("crate version is semver")
}

impl Session {
    /// Reads everything; a broken configuration is an error, broken manifests are not.
    pub fn open(options: SessionOptions) -> Result<Session, ConfigError> {
        Session::open_with_gates(options, None)
    }

    /// Like [`Session::open`], with `extra_gates` (a file being imported) taking the place
    /// of the gates stored in the state directory.
    pub fn open_with_gates(
        options: SessionOptions, extra_gates: Option<&Path>,
    ) -> Result<Session, ConfigError> {
        let config = Config::load(options.config.as_deref())?;
        let discovery = manifest::discover_with(&options.plugin_dir, config.libraries());
        let names: Vec<&str> = discovery
            .manifests
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        let mut requests = config.requests(&options.profile, &names)?;

        let gates_path = extra_gates
            .map(Path::to_owned)
            .unwrap_or_else(|| options.state_dir.join("gates.json"));
        let imported = if extra_gates.is_some() || gates_path.is_file() {
            let gates = GatesFile::read(&gates_path).map_err(|mut e| {
                e.message.push_str(if extra_gates.is_some() {
                    " (`dubchain-perf gates export FILE` writes a gates file)"
                } else {
                    " (the gates stored by `gates import`: `dubchain-perf gates reset` removes them)"
                });
                e
            })?;
            Some((gates_path.clone(), gates))
        } else {
            None
        };
        if let Some((path, gates)) = &imported {
            requests.extend(gates.requests(path));
        }
        requests.extend(options.disable.iter().map(|n| Request {
            name: n.clone(),
            enable: false,
            source: Source::CommandLine,
        }));
        requests.extend(options.enable.iter().map(|n| Request {
            name: n.clone(),
            enable: true,
            source: Source::CommandLine,
        }));
        requests.extend(options.monitor.iter().map(|(n, enable)| Request {
            name: n.clone(),
            enable: *enable,
            source: Source::Monitor,
        }));

        let resolution = resolve::resolve(&discovery.manifests, &requests, &host_api_version());
        Ok(Session {
            options,
            config,
            manifests: discovery.manifests,
            manifest_errors: discovery.errors,
            imported,
            requests,
            resolution,
        })
    }

    pub fn manifest(&self, name: &str) -> Option<&Manifest> {
        self.manifests.iter().find(|m| m.name == name)
    }

    /// ` (did you mean `X`?)` for a name no plugin in the directory has, when one is close.
    pub fn did_you_mean(&self, name: &str) -> String {
        manifest::did_you_mean(name, self.manifests.iter().map(|m| m.name.as_str()))
    }

    /// Names in the configuration that no plugin in the directory has: a settings table of
    /// the selected profile, an entry of `[host] isolate`. Either would do nothing without a
    /// word (a misspelt name leaves the plugin at its defaults, or in the host's process).
    pub fn config_warnings(&self) -> Vec<String> {
        let unknown = |name: &&String| self.manifest(name).is_none();
        let source = &self.config.source;
        let mut out = Vec::new();
        if let Ok(profile) = self.config.profile(&self.options.profile) {
            for name in profile.plugins.keys().filter(unknown) {
                out.push(format!(
                    "{source}: [profiles.{}.plugins.{name}] names no plugin in the plugin directory, so its settings go to none; correct the name{} or remove the table",
                    self.options.profile,
                    self.did_you_mean(name)
                ));
            }
        }
        for name in self.config.isolate().iter().filter(unknown) {
            out.push(format!(
                "{source}: [host] isolate names `{name}`, which is not in the plugin directory, so nothing is isolated for it; correct the name{} or remove it",
                self.did_you_mean(name)
            ));
        }
        out
    }

    /// A host configured from this session's configuration.
    pub fn host(&self) -> Host {
        self.host_isolating(self.config.isolate())
    }

    /// [`Session::host`], loading the plugins in `isolate` each in a child process.
    pub fn host_isolating(&self, isolate: std::collections::BTreeSet<String>) -> Host {
        Host::new(HostOptions {
            init_timeout: self.config.init_timeout(),
            step_timeout: self.config.step_timeout(),
            require_sha256: self.config.require_sha256(),
            isolate,
            // A session is `dubchain-perf`'s: it serves isolated plugins itself.
            launcher: std::env::current_exe()
                .ok()
                .map(|program| crate::isolate::Launcher {
                    program,
                    args: vec!["plugin".into(), "serve".into()],
                    call_timeout: self.config.isolated_call_timeout(),
                    deadlines: crate::loader::Deadlines {
                        init: self.config.init_timeout(),
                        step: self.config.step_timeout(),
                    },
                }),
            breaker: self.config.breaker(),
            ..HostOptions::default()
        })
    }

    /// A new host with this session's plan applied: what every node of a measured run gets,
    /// so that no plugin instance, cache or pool is shared between nodes or runs. A plan
    /// with problems is refused, and so is a plugin that fails to load unless
    /// `allow_missing` (then the host goes on without it, as its slots' baselines).
    pub fn loaded_host(&self, allow_missing: bool) -> Result<Host, String> {
        self.loaded_host_with(&self.resolution, allow_missing)
    }

    /// Like [`Session::loaded_host`], with `resolution` (over this session's manifests) in
    /// place of the session's own.
    pub fn loaded_host_with(
        &self, resolution: &Resolution, allow_missing: bool,
    ) -> Result<Host, String> {
        self.apply_to(self.host(), resolution, allow_missing)
    }

    /// `resolution` applied to `host`, as [`Session::loaded_host_with`] does it.
    pub fn apply_to(
        &self, host: Host, resolution: &Resolution, allow_missing: bool,
    ) -> Result<Host, String> {
        let report = self
            .apply_resolution(&host, resolution)
            .map_err(|problems| {
                format!(
                    "the plan has {} problem(s): {}",
                    problems.len(),
                    problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
        match report.failed.first() {
            Some(e) if !allow_missing => Err(e.to_string()),
            _ => Ok(host),
        }
    }

    /// Applies this session's resolution to `host`.
    pub fn apply(&self, host: &Host) -> Result<ApplyReport, Vec<Problem>> {
        self.apply_resolution(host, &self.resolution)
    }

    /// `resolution` applied to `host` with this session's plugin settings; a failure in a
    /// step that read them names where they are.
    fn apply_resolution(
        &self, host: &Host, resolution: &Resolution,
    ) -> Result<ApplyReport, Vec<Problem>> {
        let profile = &self.options.profile;
        host.apply_with(
            &self.manifests,
            resolution,
            |name| self.config.plugin_config(profile, name),
            |name| self.config.plugin_table(profile, name),
        )
    }
}
