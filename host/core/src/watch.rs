//! Hot reload: the host watches its plugin directory and re-resolves and re-applies the plan
//! when a manifest or library appears, changes or disappears.
//!
//! A change is picked up after the directory has been quiet for [`QUIET`]; events about
//! hidden files (`.name.tmp`, the way tools write before renaming) are ignored. Reloading is
//! [`Host::apply`]: a changed library is loaded from a fresh copy of the bytes that were
//! hashed, checked, initialised and self-tested before it is swapped in; if any step fails,
//! the live version keeps serving. A library still being written therefore cannot be
//! loaded half-written: the half it sees fails its checks, the old version serves on, and
//! the event that ends the write triggers another reload.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher as _};
use serde::Serialize;

use crate::{
    session::{Session, SessionOptions},
    Host,
};

/// How long the directory must be quiet before a reload.
pub const QUIET: Duration = Duration::from_millis(250);

/// What one reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadEvent {
    /// The files whose changes triggered it (empty for an explicit reload).
    pub changed: Vec<PathBuf>,
    /// The feature set serving after the reload (`Plan::feature_set_id`).
    pub feature_set_id: String,
    /// `name@version#generation` of each plugin loaded by this reload.
    pub loaded: Vec<String>,
    /// Plugins no longer live.
    pub retired: Vec<String>,
    /// Load failures (the live version, if any, keeps serving).
    pub failed: Vec<String>,
    /// Why the new plan was not applied at all (nothing changed).
    pub problems: Vec<String>,
    /// What the plan warned of (applied all the same).
    pub warnings: Vec<String>,
}

impl ReloadEvent {
    /// Whether the reload changed what serves any slot.
    pub fn swapped(&self) -> bool {
        !self.loaded.is_empty() || !self.retired.is_empty()
    }
}

impl std::fmt::Display for ReloadEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reload (feature set {})", self.feature_set_id)?;
        for l in &self.loaded {
            write!(f, "\n  swapped in {l}")?;
        }
        for r in &self.retired {
            write!(f, "\n  retired {r}; its slots fall back to what is below")?;
        }
        for e in &self.failed {
            write!(f, "\n  failed: {e}")?;
        }
        for p in &self.problems {
            write!(f, "\n  not applied: {p}")?;
        }
        for w in &self.warnings {
            write!(f, "\n  warning: {w}")?;
        }
        if !self.swapped() && self.failed.is_empty() && self.problems.is_empty() {
            write!(f, "\n  nothing changed")?;
        }
        Ok(())
    }
}

/// Re-resolves the plan of a session and applies it to a host.
pub struct Reloader {
    host: Arc<Host>,
    options: Mutex<SessionOptions>,
    /// Held by each reload, so that a change of options and a reload of the directory
    /// never interleave.
    changing: Mutex<()>,
}

impl Reloader {
    pub fn new(host: Arc<Host>, options: SessionOptions) -> Reloader {
        Reloader {
            host,
            options: Mutex::new(options),
            changing: Mutex::new(()),
        }
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Changes the session options (for example the plugins enabled) used by later reloads.
    pub fn update_options(&self, f: impl FnOnce(&mut SessionOptions)) {
        f(&mut self.options.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The session options later reloads use.
    pub fn options(&self) -> SessionOptions {
        self.options
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the session options with `f` and reloads, keeping the change only if the new
    /// plan had no problems (then it was applied; otherwise nothing changed, and the event's
    /// `problems` say why). What a contract rollback does; the admin API uses
    /// [`Reloader::try_change_checked`].
    pub fn try_change(&self, f: impl FnOnce(&mut SessionOptions)) -> ReloadEvent {
        let Ok(event) = self.try_change_checked(f, |_| Ok::<(), std::convert::Infallible>(()));
        event
    }

    /// Like [`Reloader::try_change`], with `check` shown the session the changed options
    /// open (the directory and configuration read once) before anything is applied: its
    /// error leaves everything as it was and is returned. The admin API checks there that
    /// the plugin it is asked about is in the directory.
    pub fn try_change_checked<E>(
        &self, f: impl FnOnce(&mut SessionOptions), check: impl FnOnce(&Session) -> Result<(), E>,
    ) -> Result<ReloadEvent, E> {
        let _one_change_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let mut options = self.options();
        f(&mut options);
        let session = Session::open(options.clone());
        if let Ok(s) = &session {
            check(s)?;
        }
        let event = self.apply(session, Vec::new());
        if event.problems.is_empty() {
            *self.options.lock().unwrap_or_else(|p| p.into_inner()) = options;
        }
        Ok(event)
    }

    /// Reads the directory and configuration again and applies the result.
    pub fn reload(&self, changed: Vec<PathBuf>) -> ReloadEvent {
        let _one_change_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        self.apply(Session::open(self.options()), changed)
    }

    /// Applies an opened session's plan (or reports why the session did not open).
    fn apply(
        &self, session: Result<Session, crate::config::ConfigError>, changed: Vec<PathBuf>,
    ) -> ReloadEvent {
        let mut event = ReloadEvent {
            changed,
            ..ReloadEvent::default()
        };
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                event.problems.push(e.to_string());
                return event;
            }
        };
        event.feature_set_id = session.resolution.feature_set_id.clone();
        event
            .warnings
            .extend(session.manifest_errors.iter().map(ToString::to_string));
        event
            .warnings
            .extend(session.resolution.warnings.iter().map(ToString::to_string));
        match session.apply(&self.host) {
            Ok(report) => {
                event.loaded = report
                    .loaded
                    .iter()
                    .map(|n| match self.host.live_version(n) {
                        Some((v, g)) => format!("{n}@{v}#{g}"),
                        None => n.clone(),
                    })
                    .collect();
                event.retired = report.retired;
                event.failed = report
                    .failed
                    .iter()
                    .map(|e| {
                        if report.kept_after_failure.iter().any(|k| k == e.plugin()) {
                            format!("{e} (the live version keeps serving)")
                        } else {
                            e.to_string()
                        }
                    })
                    .collect();
            }
            Err(problems) => event.problems = problems.iter().map(ToString::to_string).collect(),
        }
        event
    }
}

/// A running watch; dropping it stops watching.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watches `dir` and calls `reloader.reload` after each burst of relevant changes, handing
/// every event to `on_event`.
pub fn watch(
    dir: &Path, reloader: Arc<Reloader>, on_event: impl Fn(ReloadEvent) + Send + 'static,
) -> Result<Watcher, notify::Error> {
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) && !is_close_write(&event.kind) {
            return;
        }
        for path in event.paths {
            if is_relevant(&path) {
                let _ = tx.send(path);
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("plugin-watch".into())
        .spawn(move || {
            while !stop_flag.load(Ordering::Relaxed) {
                let first = match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(p) => p,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let mut changed = vec![first];
                while let Ok(p) = rx.recv_timeout(QUIET) {
                    if !changed.contains(&p) {
                        changed.push(p);
                    }
                }
                changed.sort();
                on_event(reloader.reload(changed));
            }
        })
        .expect("spawn watch thread");
    Ok(Watcher {
        _watcher: watcher,
        stop,
        thread: Some(thread),
    })
}

fn is_close_write(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(notify::event::AccessKind::Close(
            notify::event::AccessMode::Write
        ))
    )
}

/// Manifests and libraries, not hidden or temporary files.
fn is_relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && (name.ends_with(".toml") || name.ends_with(std::env::consts::DLL_SUFFIX))
}
