//! How a command ended, and the one place exit codes are decided.

use crate::config::ConfigError;
use crate::git::GitError;
use crate::plan::render::RenderError;
use crate::plan::PlanError;

/// A command that ran to its end (errors that stop it early are `Err`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A deploy or step failed; the fleet is on its previous release.
    Failed,
    /// A promotion gate refused (the reason was printed).
    GateRefused,
    /// Someone else holds the deploy lock.
    Locked,
    /// Undo or rollback did not complete on some hosts; they are named and
    /// need a person.
    RollbackIncomplete,
    /// Stopped by SIGINT/SIGTERM after undoing what it had started.
    Interrupted,
}

/// A refusal that ends a command at once with exit 3: a gate, or a prompt
/// that cannot be shown (no terminal).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GateError(pub String);

/// Bad usage or configuration: the user must change what they typed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for a command's result. SPEC: 0 success, 1 failed, 2 bad
/// usage or config, 4 locked, 130 interrupted.
pub fn exit_code(result: &anyhow::Result<Outcome>) -> u8 {
    match result {
        Ok(Outcome::Success) => 0,
        Ok(Outcome::Failed) => 1,
        Ok(Outcome::GateRefused) => 3,
        Ok(Outcome::Locked) => 4,
        Ok(Outcome::RollbackIncomplete) => 5,
        Ok(Outcome::Interrupted) => 130,
        Err(e)
            if e.is::<ConfigError>()
                || e.is::<PlanError>()
                || e.is::<GitError>()
                || e.is::<crate::artifact::ArtifactError>()
                || e.is::<RenderError>()
                || e.is::<crate::secrets::SecretsError>()
                || e.is::<UsageError>() =>
        {
            2
        }
        Err(e) if e.is::<GateError>() => 3,
        Err(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_spec() {
        assert_eq!(exit_code(&Ok(Outcome::Success)), 0);
        assert_eq!(exit_code(&Ok(Outcome::Failed)), 1);
        assert_eq!(exit_code(&Ok(Outcome::Locked)), 4);
        assert_eq!(exit_code(&Ok(Outcome::Interrupted)), 130);
        assert_eq!(exit_code(&Err(UsageError("x".into()).into())), 2);
        assert_eq!(exit_code(&Err(anyhow::anyhow!("io"))), 1);
    }
}
