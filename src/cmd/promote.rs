//! `shipit promote [FROM] TO`: production gets exactly the release
//! verified on staging, after its gate. The protocol is
//! [`crate::engine::promote`]; this asks the release manager on a terminal,
//! reports the gate's verdict, and hands the promotion to the deploy.

use std::path::Path;

use chrono::Utc;

use super::deploy;
use super::App;
use crate::engine::deploy as deploy_engine;
use crate::engine::gate::{Candidate, Rule};
use crate::engine::promote::{self, from_stage, Refused, Who};
use crate::engine::session::Ctx;
use crate::engine::EventSink;
use crate::git;
use crate::outcome::{GateError, Outcome, UsageError};
use crate::report::{json, Format};

/// Options of `shipit promote`.
pub struct PromoteArgs<'a> {
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub yes: bool,
    /// Only evaluate and report the gate.
    pub check: bool,
    pub sign_key: Option<&'a Path>,
    pub wait_lock: Option<std::time::Duration>,
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

/// The gate's verdict as people read it (`--check`): one line per rule.
pub fn verdict_lines(
    to: &str,
    from: &str,
    cand: Option<&Candidate>,
    rules: &[Rule],
) -> Vec<String> {
    let passed = rules.iter().all(|r| r.passed);
    let mut out = vec![match cand {
        Some(c) => format!(
            "gate `{to}` (from `{from}`, release {} commit {}):",
            c.release,
            &c.commit[..c.commit.len().min(12)]
        ),
        None => format!("gate `{to}` (from `{from}`):"),
    }];
    out.extend(rules.iter().map(|r| {
        format!(
            "  {} {}: {}",
            if r.passed { "ok  " } else { "FAIL" },
            r.rule,
            r.detail
        )
    }));
    out.push(format!(
        "promote {to}: {}",
        if passed {
            "the gate would let it through"
        } else {
            "the gate refuses"
        }
    ));
    out
}

/// Writes the `gate` event (json), or with `--check` the rules (text).
fn report_gate(
    app: &App,
    check: bool,
    to: &str,
    from: &str,
    cand: Option<&Candidate>,
    rules: &[Rule],
) -> anyhow::Result<()> {
    if app.output.format == Format::Json {
        let v = json::gate(
            to,
            from,
            cand.map(|c| c.release.as_str()),
            cand.map(|c| c.commit.as_str()),
            rules,
        );
        app.write_out(&format!("{}\n", json::line(&v)))?;
    } else if check {
        app.write_out(&(verdict_lines(to, from, cand, rules).join("\n") + "\n"))?;
    }
    Ok(())
}

/// Reviews the promotion; a refusal before the gate weighed decisions is
/// reported as the `gate` event, then ends the command with exit 3.
async fn review(
    app: &App,
    ctx: &Ctx,
    config: &crate::config::Config,
    from: &str,
    to: &str,
    who: &Who,
    check: bool,
) -> anyhow::Result<promote::Review> {
    match promote::review(ctx, config, from, to, who, Utc::now()).await {
        Ok(r) => Ok(r),
        Err(e) => match e.downcast::<Refused>() {
            Ok(r) => {
                report_gate(app, check, &r.to, &r.from, r.cand.as_ref(), &r.rules)?;
                Err(GateError(format!("promote refused: {}", r.why)).into())
            }
            Err(e) => Err(e),
        },
    }
}

pub async fn promote(app: &App, args: PromoteArgs<'_>) -> anyhow::Result<Outcome> {
    // A missing key for TO's secrets fails here, before the gate and prompt.
    let mut config = app.load_stage_config(args.to).await?;
    let to = args.to;
    let from = match from_stage(&config, args.from, to) {
        Ok(f) => f,
        Err(e) => match (e.downcast::<GateError>(), args.from) {
            (Ok(GateError(why)), Some(asked)) => {
                report_gate(
                    app,
                    args.check,
                    to,
                    asked,
                    None,
                    &[Rule::fail("source", why.clone())],
                )?;
                return Err(GateError(format!("promote refused: {why}")).into());
            }
            (Ok(g), _) => return Err(g.into()),
            (Err(e), _) => return Err(e),
        },
    };
    app.resolve_inventories(&mut config, &[from.as_str(), to])
        .await?;
    let signed = promote::stage(&config, to)?
        .gate
        .as_ref()
        .is_some_and(|g| g.allowed_signers.is_some());
    if signed && args.sign_key.is_none() && !args.check {
        return Err(UsageError(format!(
            "`{to}` takes only promotions signed by an allowed signer: pass --sign-key with your ssh key (its public key must be in the stage's allowed signers)"
        ))
        .into());
    }
    if !app.interactive && !args.yes && !args.check {
        return Err(GateError(format!(
            "`shipit promote` asks for confirmation, and there is no terminal to ask on: pass --yes (the gate of `{to}` still needs its recorded approvals)"
        ))
        .into());
    }
    let who = Who {
        name: app.user(),
        sign_key: args.sign_key.map(Path::to_path_buf),
    };
    let ctx = unreported(app);
    let mut review = review(app, &ctx, &config, &from, to, &who, args.check).await?;
    if args.check {
        report_gate(
            app,
            true,
            to,
            &from,
            Some(&review.cand),
            &review.verdict.rules,
        )?;
        return Ok(if review.verdict.passed() {
            Outcome::Success
        } else {
            Outcome::GateRefused
        });
    }
    if app.interactive && !args.yes {
        let commit = review.cand.commit.clone();
        let (_, current_commit) = review.target_current();
        let changes = git::changes(&config.repository, &app.env, current_commit, &commit, 50);
        let subject = git::subject(&config.repository, &app.env, &commit);
        let answer = crate::terminal::ask(&review.lines(&subject, &changes), &review.question())?;
        review.confirm(&ctx, &config, &answer).await?;
        // What was read before the prompt may have changed while the
        // release manager read it (a rejection, a new release): read again.
        let seen = review.cand.clone();
        review = self::review(app, &ctx, &config, &from, to, &who, false).await?;
        if review.cand.release != seen.release || review.cand.commit != seen.commit {
            return Err(GateError(format!(
                "the candidate changed while you were reading (now release {} commit {}): nothing was promoted, run `shipit promote {to}` again",
                review.cand.release, review.cand.commit
            ))
            .into());
        }
    }
    report_gate(
        app,
        false,
        to,
        &from,
        Some(&review.cand),
        &review.verdict.rules,
    )?;
    let commit = review.cand.commit.clone();
    let seen = review.cand.clone();
    let mut promotion = review.promotion()?;
    promotion.recheck = Some(recheck(config.clone(), ctx, from.clone(), to, who, seen));
    deploy::run_with(
        app,
        to,
        Some(&commit),
        None,
        args.wait_lock,
        Some(&promotion),
    )
    .await
}

/// The gate evaluated again, for the deploy to run once it holds the lock:
/// the same candidate, every rule passing.
fn recheck(
    config: crate::config::Config,
    ctx: Ctx,
    from: String,
    to: &str,
    who: Who,
    seen: Candidate,
) -> deploy_engine::Recheck {
    let config = std::sync::Arc::new(config);
    let to = to.to_string();
    std::sync::Arc::new(move || {
        let (config, ctx, from, to, who, seen) = (
            config.clone(),
            ctx.clone(),
            from.clone(),
            to.clone(),
            who.clone(),
            seen.clone(),
        );
        Box::pin(async move {
            let r = match promote::review(&ctx, &config, &from, &to, &who, Utc::now()).await {
                Ok(r) => r,
                Err(e) => return Err(format!("{e:#}")),
            };
            if r.cand.release != seen.release || r.cand.commit != seen.commit {
                return Err(format!(
                    "the candidate changed (now release {} commit {})",
                    r.cand.release, r.cand.commit
                ));
            }
            r.verdict.result().map(|_| ())
        })
    })
}
