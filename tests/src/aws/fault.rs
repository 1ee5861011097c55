//! One-shot faults a rehearsal injects at the emulator: the next call of an action is
//! answered with an error, either instead of being handled ([`FaultWhen::Before`]: nothing
//! happened) or after it was handled ([`FaultWhen::After`]: it took effect, but the
//! caller sees an error — the "outcome unknown" case of a lost answer).
//!
//! Invariant: each injected fault fires at most once, on the first matching call, in
//! injection order.

use std::collections::VecDeque;

/// When the fault replaces the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultWhen {
    /// The call is not handled (nor forwarded); the error is the answer.
    Before,
    /// The call is handled (or forwarded) and its answer thrown away for the error.
    After,
}

/// An error answer for the next call of `action` (`StartBuild`, `TransactWriteItems`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub action: String,
    pub when: FaultWhen,
    pub status: u16,
    /// The AWS error code (`ThrottlingException`, `InternalFailure`, …).
    pub code: String,
    pub message: String,
}

impl Fault {
    /// HTTP 500 `InternalFailure` after the call took effect.
    pub fn lost_answer(action: &str) -> Fault {
        Fault {
            action: action.to_owned(),
            when: FaultWhen::After,
            status: 500,
            code: "InternalFailure".into(),
            message: "injected by the rehearsal: the call took effect, its answer was lost".into(),
        }
    }

    /// HTTP 400 `ThrottlingException` instead of the call.
    pub fn throttled(action: &str) -> Fault {
        Fault {
            action: action.to_owned(),
            when: FaultWhen::Before,
            status: 400,
            code: "ThrottlingException".into(),
            message: "injected by the rehearsal: Rate exceeded".into(),
        }
    }
}

/// Faults waiting for their call.
#[derive(Debug, Default)]
pub struct Faults {
    queue: VecDeque<Fault>,
}

impl Faults {
    pub fn push(&mut self, f: Fault) {
        self.queue.push_back(f);
    }

    /// Remove and return the first fault for `action`.
    pub fn take(&mut self, action: Option<&str>) -> Option<Fault> {
        let action = action?;
        let i = self.queue.iter().position(|f| f.action == action)?;
        self.queue.remove(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_once_on_its_action_in_order() {
        let mut f = Faults::default();
        f.push(Fault::throttled("StartBuild"));
        f.push(Fault::lost_answer("StartBuild"));
        assert_eq!(f.take(Some("BatchGetBuilds")), None);
        assert_eq!(f.take(None), None);
        assert_eq!(f.take(Some("StartBuild")).unwrap().when, FaultWhen::Before);
        assert_eq!(f.take(Some("StartBuild")).unwrap().when, FaultWhen::After);
        assert_eq!(f.take(Some("StartBuild")), None);
    }
}
