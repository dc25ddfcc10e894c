//! The invocation status model (SPEC §2), as data.
//!
//! The backend stores statuses; it does not enforce moves. This module is
//! the domain knowledge a runtime (or `taskstate inspect`) uses to check a
//! history chain and ownership.

use std::fmt;
use std::str::FromStr;

use crate::error::KeyError;

/// The 14 statuses of an invocation. Text form: lower-case snake case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum InvocationStatus {
    Registered,
    ConcurrencyControlled,
    ConcurrencyControlledFinal,
    Rerouted,
    Pending,
    PendingRecovery,
    Running,
    RunningRecovery,
    Paused,
    Resumed,
    Killed,
    Success,
    Failed,
    Retry,
}

use InvocationStatus as S;

/// Ownership behaviour of a status (the flags column of SPEC §2's table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusFlags {
    /// A move out of this status must come from the owning runner.
    pub requires_ownership: bool,
    /// Moving into this status makes the moving runner the owner.
    pub acquires_ownership: bool,
    /// Moving into this status clears the owner.
    pub releases_ownership: bool,
    /// Moving into this status skips ownership checks.
    pub overrides_ownership: bool,
}

const fn flags(own: bool, acq: bool, rel: bool, ovr: bool) -> StatusFlags {
    StatusFlags {
        requires_ownership: own,
        acquires_ownership: acq,
        releases_ownership: rel,
        overrides_ownership: ovr,
    }
}

impl InvocationStatus {
    /// All statuses, in declaration order.
    pub const ALL: [InvocationStatus; 14] = [
        S::Registered,
        S::ConcurrencyControlled,
        S::ConcurrencyControlledFinal,
        S::Rerouted,
        S::Pending,
        S::PendingRecovery,
        S::Running,
        S::RunningRecovery,
        S::Paused,
        S::Resumed,
        S::Killed,
        S::Success,
        S::Failed,
        S::Retry,
    ];

    /// The text form (`"concurrency_controlled"`...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            S::Registered => "registered",
            S::ConcurrencyControlled => "concurrency_controlled",
            S::ConcurrencyControlledFinal => "concurrency_controlled_final",
            S::Rerouted => "rerouted",
            S::Pending => "pending",
            S::PendingRecovery => "pending_recovery",
            S::Running => "running",
            S::RunningRecovery => "running_recovery",
            S::Paused => "paused",
            S::Resumed => "resumed",
            S::Killed => "killed",
            S::Success => "success",
            S::Failed => "failed",
            S::Retry => "retry",
        }
    }

    /// Statuses this one may move to.
    #[must_use]
    pub fn allowed_next(self) -> &'static [InvocationStatus] {
        match self {
            S::Registered => &[
                S::Pending,
                S::ConcurrencyControlled,
                S::ConcurrencyControlledFinal,
            ],
            S::ConcurrencyControlled => &[S::Rerouted],
            S::Rerouted => &[S::Pending, S::ConcurrencyControlled],
            S::Pending => &[
                S::Running,
                S::Killed,
                S::Rerouted,
                S::Failed,
                S::PendingRecovery,
            ],
            S::PendingRecovery => &[S::Rerouted],
            S::Running => &[
                S::Paused,
                S::Killed,
                S::Retry,
                S::Success,
                S::Failed,
                S::RunningRecovery,
            ],
            S::RunningRecovery => &[S::Rerouted],
            S::Paused => &[S::Resumed, S::Killed],
            S::Resumed => &[S::Paused, S::Killed, S::Retry, S::Success, S::Failed],
            S::Killed => &[S::Rerouted],
            S::Retry => &[S::Pending],
            S::Success | S::Failed | S::ConcurrencyControlledFinal => &[],
        }
    }

    /// This status's ownership flags.
    #[must_use]
    pub fn flags(self) -> StatusFlags {
        match self {
            S::Registered
            | S::ConcurrencyControlled
            | S::Rerouted
            | S::Killed
            | S::Retry
            | S::Success
            | S::Failed
            | S::ConcurrencyControlledFinal => flags(false, false, true, false),
            S::Pending => flags(true, true, false, false),
            S::PendingRecovery | S::RunningRecovery => flags(false, false, true, true),
            S::Running | S::Paused | S::Resumed => flags(true, false, false, false),
        }
    }

    /// Whether no further move is possible.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, S::Success | S::Failed | S::ConcurrencyControlledFinal)
    }

    /// Whether a runner may pick the invocation up.
    #[must_use]
    pub fn is_available_for_run(self) -> bool {
        matches!(self, S::Registered | S::Rerouted | S::Retry)
    }

    /// Whether `from → self` is an allowed move (`from = None`: the first
    /// record, which must be `registered`).
    #[must_use]
    pub fn can_follow(self, from: Option<InvocationStatus>) -> bool {
        match from {
            None => self == S::Registered,
            Some(f) => f.allowed_next().contains(&self),
        }
    }
}

impl fmt::Display for InvocationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InvocationStatus {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        S::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| KeyError::new("status", s, "not one of the 14 invocation statuses"))
    }
}

/// Why an ownership check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    /// The current status requires the owner, and another runner moved it.
    #[error(
        "status {current} is owned by {owner:?}; runner {runner:?} may not move it to {target}"
    )]
    NotOwner {
        /// Current status.
        current: InvocationStatus,
        /// Target status.
        target: InvocationStatus,
        /// Current owner.
        owner: Option<String>,
        /// Runner attempting the move.
        runner: Option<String>,
    },
    /// The target acquires ownership, but no runner id was given.
    #[error("status {target} acquires ownership but no runner id was given")]
    NoRunner {
        /// Target status.
        target: InvocationStatus,
    },
}

/// Checks whether `runner` may move an invocation from `current` (status and
/// owner) to `target`, and returns the owner afterwards (SPEC §2).
///
/// ```
/// use taskstate_core::{check_ownership, InvocationStatus as S};
/// let owner = check_ownership(Some((S::Registered, None)), S::Pending, Some("r1")).unwrap();
/// assert_eq!(owner.as_deref(), Some("r1"));
/// assert!(check_ownership(Some((S::Pending, Some("r1"))), S::Running, Some("r2")).is_err());
/// ```
pub fn check_ownership(
    current: Option<(InvocationStatus, Option<&str>)>,
    target: InvocationStatus,
    runner: Option<&str>,
) -> Result<Option<String>, OwnershipError> {
    let tf = target.flags();
    if let Some((cur, owner)) = current
        && !tf.overrides_ownership
    {
        if cur.flags().requires_ownership && owner != runner {
            return Err(OwnershipError::NotOwner {
                current: cur,
                target,
                owner: owner.map(str::to_owned),
                runner: runner.map(str::to_owned),
            });
        }
        if tf.acquires_ownership && runner.is_none_or(str::is_empty) {
            return Err(OwnershipError::NoRunner { target });
        }
    }
    let previous_owner = current.and_then(|(_, o)| o).map(str::to_owned);
    Ok(if tf.releases_ownership {
        None
    } else if tf.acquires_ownership {
        runner.map(str::to_owned)
    } else {
        previous_owner
    })
}

/// A step of a history chain that is not an allowed move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step {index}: {} -> {to} is not an allowed move", from.map_or("(none)", |s| s.as_str()))]
pub struct ChainError {
    /// Index of the offending record in the chain.
    pub index: usize,
    /// Status before the step (`None` for the first record).
    pub from: Option<InvocationStatus>,
    /// Status of the offending record.
    pub to: InvocationStatus,
}

/// Validates a chain of statuses (a history sorted by timestamp): every step
/// must be an allowed move, starting from no status.
///
/// ```
/// use taskstate_core::{validate_chain, InvocationStatus as S};
/// assert!(validate_chain([S::Registered, S::Pending, S::Running, S::Success]).is_ok());
/// let err = validate_chain([S::Registered, S::Running]).unwrap_err();
/// assert_eq!(err.index, 1);
/// ```
pub fn validate_chain(
    statuses: impl IntoIterator<Item = InvocationStatus>,
) -> Result<(), ChainError> {
    let mut prev = None;
    for (index, to) in statuses.into_iter().enumerate() {
        if !to.can_follow(prev) {
            return Err(ChainError {
                index,
                from: prev,
                to,
            });
        }
        prev = Some(to);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_for_all_14() {
        assert_eq!(S::ALL.len(), 14);
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<InvocationStatus>().unwrap(), s);
        }
        assert!("Running".parse::<InvocationStatus>().is_err());
    }

    #[test]
    fn final_statuses_have_no_moves() {
        for s in S::ALL {
            assert_eq!(s.is_final(), s.allowed_next().is_empty(), "{s}");
        }
        let avail: Vec<_> = S::ALL
            .into_iter()
            .filter(|s| s.is_available_for_run())
            .collect();
        assert_eq!(avail, [S::Registered, S::Rerouted, S::Retry]);
    }

    #[test]
    fn chain_validation() {
        assert!(validate_chain([]).is_ok());
        assert_eq!(
            validate_chain([S::Pending]).unwrap_err(),
            ChainError {
                index: 0,
                from: None,
                to: S::Pending
            }
        );
        assert!(
            validate_chain([
                S::Registered,
                S::Pending,
                S::Running,
                S::Paused,
                S::Resumed,
                S::Retry,
                S::Pending,
                S::Running,
                S::Success
            ])
            .is_ok()
        );
        assert!(
            validate_chain([
                S::Registered,
                S::Pending,
                S::Running,
                S::Success,
                S::Running
            ])
            .is_err()
        );
    }

    #[test]
    fn ownership_rules() {
        // No current record: anyone.
        assert_eq!(check_ownership(None, S::Registered, None).unwrap(), None);
        // Acquire needs a runner id.
        assert_eq!(
            check_ownership(Some((S::Registered, None)), S::Pending, Some("")).unwrap_err(),
            OwnershipError::NoRunner { target: S::Pending }
        );
        // Owned status, other runner.
        assert!(check_ownership(Some((S::Running, Some("a"))), S::Success, Some("b")).is_err());
        // Same runner keeps going; success releases.
        assert_eq!(
            check_ownership(Some((S::Running, Some("a"))), S::Paused, Some("a")).unwrap(),
            Some("a".into())
        );
        assert_eq!(
            check_ownership(Some((S::Running, Some("a"))), S::Success, Some("a")).unwrap(),
            None
        );
        // Override skips checks and releases.
        assert_eq!(
            check_ownership(Some((S::Running, Some("a"))), S::RunningRecovery, Some("b")).unwrap(),
            None
        );
    }
}
