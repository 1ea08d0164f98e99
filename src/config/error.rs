//! The one error type of the config layer.

use std::fmt;
use std::path::{Path, PathBuf};

/// A `deploy.yml` that cannot be read or is not valid.
///
/// The message is a lowercase fragment naming the offending key or value in
/// backticks; the location, when known, is the 1-based line and column of
/// that key or value in the file. Display gives
/// `<message> (<file>:<line>:<column>)`, or `<message> (<file>)` without a
/// location, with the file as the user named it.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({})", Where(self))]
pub struct ConfigError {
    path: PathBuf,
    location: Option<(usize, usize)>,
    message: String,
    #[source]
    source: Option<std::io::Error>,
}

impl ConfigError {
    pub(crate) fn new(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.to_path_buf(),
            location: None,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn at(
        path: &Path,
        location: Option<(usize, usize)>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            location,
            ..ConfigError::new(path, message)
        }
    }

    pub(crate) fn io(path: &Path, message: impl Into<String>, source: std::io::Error) -> Self {
        ConfigError {
            source: Some(source),
            ..ConfigError::new(path, message)
        }
    }

    /// The config file as the user named it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line of the offending key or value, when known.
    pub fn line(&self) -> Option<usize> {
        self.location.map(|(line, _)| line)
    }

    /// 1-based column (in characters) of the offending key or value, when
    /// known.
    pub fn column(&self) -> Option<usize> {
        self.location.map(|(_, column)| column)
    }

    /// The message without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `file:line:column`, or just `file`.
struct Where<'a>(&'a ConfigError);

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        match e.location {
            Some((line, column)) => write!(f, "{}:{line}:{column}", e.path.display()),
            None => write!(f, "{}", e.path.display()),
        }
    }
}
