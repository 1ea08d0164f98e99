//! `shipit approve STAGE [--release ID]`: records a release manager's
//! approval (or `--reject`ion) of the candidate of the stage's
//! `promote_from`, on every host of STAGE (the protocol is
//! [`crate::engine::approve`]).

use std::path::Path;
use std::time::Duration;

use chrono::Utc;

use super::App;
use crate::engine::approve::{self, ApproveRun};
use crate::engine::promote::{from_stage, stage};
use crate::outcome::{Outcome, UsageError};

/// How long an approval counts when neither `--expires` nor the gate's
/// `approval_ttl` says.
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// Options of `shipit approve`.
pub struct ApproveArgs<'a> {
    pub stage: &'a str,
    pub release: Option<&'a str>,
    pub commit: Option<&'a str>,
    pub as_user: Option<&'a str>,
    pub reject: bool,
    pub expires: Option<Duration>,
    pub sign_key: Option<&'a Path>,
    pub message: Option<&'a str>,
}

pub async fn run(app: &App, args: ApproveArgs<'_>) -> anyhow::Result<Outcome> {
    let mut config = app.load_config()?;
    let to = args.stage;
    let from = from_stage(&config, None, to)?;
    app.resolve_inventories(&mut config, &[from.as_str(), to])
        .await?;
    let gate = stage(&config, to)?.gate.clone();
    if gate.as_ref().is_some_and(|g| g.allowed_signers.is_some()) && args.sign_key.is_none() {
        return Err(UsageError(format!(
            "`{to}` accepts only signed approvals: pass --sign-key with your ssh key (its public key must be in the stage's allowed signers)"
        ))
        .into());
    }
    if let (Some(want), Some(g)) = (args.expires, gate.as_ref()) {
        if want > g.approval_ttl {
            return Err(UsageError(format!(
                "--expires {} is longer than the approval_ttl of `{to}`'s gate ({}): an approval counts at most that long",
                crate::engine::gate::human(want),
                crate::engine::gate::human(g.approval_ttl)
            ))
            .into());
        }
    }
    let user = args
        .as_user
        .map(str::to_string)
        .unwrap_or_else(|| app.user());
    let run = ApproveRun {
        config: &config,
        from: &from,
        to,
        release: args.release,
        user: &user,
        rejected: args.reject,
        ttl: args
            .expires
            .or(gate.as_ref().map(|g| g.approval_ttl))
            .unwrap_or(DEFAULT_TTL),
        now: Utc::now(),
        detail: args.message.map(str::to_string),
        sign_key: args.sign_key,
        commit: args.commit,
    };
    app.reported(app.base_redactor(), |ctx| approve::run(ctx, run))
        .await
}
