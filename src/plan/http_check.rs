//! An `http:` smoke test as the plan holds it: what shipit GETs, from the
//! machine it runs on, for one host, and which status passes. Checked by
//! `engine::http_probe`.

use std::time::Duration;

/// How long one attempt may take (connect, send, read the answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One host's HTTP check: `GET url` until it answers `expect`, up to
/// `retries` more times `interval` apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// An `http://` URL, rendered for the host.
    pub url: String,
    pub expect: u16,
    pub retries: u32,
    pub interval: Duration,
}

impl HttpCheck {
    /// The check in words, for `shipit plan`.
    pub fn describe(&self) -> String {
        let tries = if self.retries == 0 {
            String::new()
        } else {
            format!(
                ", up to {} more attempts {}s apart",
                self.retries,
                self.interval.as_secs_f64()
            )
        };
        format!(
            "# from the shipit machine: GET {} until it answers {}{tries}",
            self.url, self.expect
        )
    }
}
