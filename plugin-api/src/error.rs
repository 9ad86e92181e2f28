use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// What went wrong in a plugin call, as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// The class of failure.
    pub kind: ErrorKind,
    /// A human-readable explanation, without a trailing period.
    pub message: RString,
}

/// The class of a [`PluginError`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The plugin could not do the work (bad configuration, resource exhausted, ...).
    Failed,
    /// The plugin panicked; the panic was caught at the boundary.
    Panicked,
    /// The input was outside what the slot contract allows.
    InvalidInput,
}

impl PluginError {
    /// A [`ErrorKind::Failed`] error with this message.
    pub fn failed(message: impl Into<String>) -> Self {
        PluginError {
            kind: ErrorKind::Failed,
            message: RString::from(message.into()),
        }
    }

    /// The error for a lock that another caller poisoned by panicking while it held
    /// `what`: `lock().map_err(|_| PluginError::poisoned("the tally"))`. Out of line and
    /// cold, so a plugin's hot path saves no registers for building it (as the baseline's
    /// `expect` does not).
    #[cold]
    #[inline(never)]
    pub fn poisoned(what: &str) -> Self {
        PluginError::failed(format!("a caller panicked holding {what}"))
    }

    /// A [`ErrorKind::InvalidInput`] error with this message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        PluginError {
            kind: ErrorKind::InvalidInput,
            message: RString::from(message.into()),
        }
    }

    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        PluginError {
            kind: ErrorKind::Panicked,
            message: RString::from(format!("plugin panicked: {what}")),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}
