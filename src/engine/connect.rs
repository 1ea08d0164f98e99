//! Opening the transports of a run: one per host, a bounded number at once.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Host, SshSettings, TransportKind};
use crate::transport::leftovers;
use crate::transport::local::LocalTransport;
use crate::transport::ssh::{SshTarget, SshTransport};
use crate::transport::{Transport, TransportError};

/// How many ssh connections may be starting at the same moment: enough to
/// fill a big fleet quickly, few enough that ssh's own CPU work and sshd's
/// `MaxStartups` are never the bottleneck.
pub const CONNECT_AT_ONCE: usize = 64;

/// A new directory for this run's ssh control sockets (named after this
/// process, see [`leftovers`]), after cleaning what runs that were killed
/// left behind; `notice` hears of each cleaned one.
pub fn control_dir(notice: impl Fn(String)) -> std::io::Result<tempfile::TempDir> {
    // The run's first change outside this process: a signal now undoes
    // and unlocks instead of exiting at once.
    crate::quick_exit::changes_begin();
    let tmp = std::env::temp_dir();
    for swept in leftovers::sweep(&tmp) {
        notice(swept.describe());
    }
    let prefix = leftovers::run_dir_prefix().unwrap_or_else(|| "shipit-".to_string());
    tempfile::Builder::new().prefix(&prefix).tempdir_in(tmp)
}

/// Connects to every host; index `i` of the result is `hosts[i]`'s.
pub async fn connect_all(
    hosts: &[&Host],
    ssh: &SshSettings,
    control_dir: &Path,
) -> Vec<Result<Arc<dyn Transport>, TransportError>> {
    let gate = Arc::new(Semaphore::new(CONNECT_AT_ONCE));
    let mut set = JoinSet::new();
    for (i, h) in hosts.iter().enumerate() {
        match h.transport {
            TransportKind::Local => {
                let t: Arc<dyn Transport> = Arc::new(LocalTransport::new(h.name.clone()));
                set.spawn(async move { (i, Ok(t)) });
            }
            TransportKind::Ssh => {
                let target = SshTarget::for_host(h, ssh);
                let dir = control_dir.to_path_buf();
                let gate = gate.clone();
                set.spawn(async move {
                    let _permit = gate.acquire_owned().await;
                    let r = SshTransport::connect(&target, &dir)
                        .await
                        .map(|t| Arc::new(t) as Arc<dyn Transport>);
                    (i, r)
                });
            }
        }
    }
    let mut out: Vec<Option<Result<Arc<dyn Transport>, TransportError>>> =
        (0..hosts.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| {
                Err(TransportError::Io {
                    host: hosts[i].name.to_string(),
                    reason: "connection task ended unexpectedly".into(),
                })
            })
        })
        .collect()
}

/// Ends every connection, all at once.
pub async fn close_all(transports: &[Option<Arc<dyn Transport>>]) {
    let mut set = JoinSet::new();
    for t in transports.iter().flatten() {
        let t = t.clone();
        set.spawn(async move {
            let _ = t.close().await;
        });
    }
    while set.join_next().await.is_some() {}
}
