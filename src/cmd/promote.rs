//! `shipit promote [FROM] TO`: production gets exactly the release
//! verified on staging, after its gate. The protocol is
//! [`crate::engine::promote`]; this asks the release manager on a terminal
//! and hands the promotion to the deploy.

use chrono::Utc;

use super::deploy;
use super::App;
use crate::engine::promote::{self, from_stage};
use crate::engine::session::Ctx;
use crate::engine::EventSink;
use crate::git;
use crate::outcome::{GateError, Outcome};

/// Options of `shipit promote`.
pub struct PromoteArgs<'a> {
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub yes: bool,
}

/// The reads and records of a promotion, before its deploy reports: not
/// reported (their failures end the command with an error).
fn unreported(app: &App) -> Ctx {
    let (events, _) = EventSink::new();
    Ctx {
        events,
        redactor: std::sync::Arc::new(app.base_redactor()),
        parallel: app.global.parallel,
        shutdown: app.shutdown.clone(),
    }
}

pub async fn promote(app: &App, args: PromoteArgs<'_>) -> anyhow::Result<Outcome> {
    // A missing key for TO's secrets fails here, before the gate and prompt.
    let config = app.load_stage_config(args.to)?;
    let to = args.to;
    let from = from_stage(&config, args.from, to)?;
    if !app.interactive && !args.yes {
        return Err(GateError(format!(
            "`shipit promote` asks for confirmation, and there is no terminal to ask on: pass --yes (the gate of `{to}` still needs its recorded approvals)"
        ))
        .into());
    }
    let ctx = unreported(app);
    let mut review = promote::review(&ctx, &config, &from, to, &app.user(), Utc::now()).await?;
    if app.interactive && !args.yes {
        let commit = review.cand.commit.clone();
        let (_, current_commit) = review.target_current();
        let changes = git::changes(&config.repository, &app.env, current_commit, &commit, 50);
        let subject = git::subject(&config.repository, &app.env, &commit);
        let answer = crate::terminal::ask(&review.lines(&subject, &changes), &review.question())?;
        review.confirm(&ctx, &config, &answer).await?;
    }
    let commit = review.cand.commit.clone();
    let promotion = review.promotion()?;
    deploy::run_with(app, to, Some(&commit), None, None, Some(&promotion)).await
}
