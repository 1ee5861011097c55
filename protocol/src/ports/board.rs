//! `Board`: where work items come from and where their status is shown.
//!
//! The board hands out raw, untrusted values ([`BoardItem`]); [`BoardItem::validate`] is
//! the one place they become a [`WorkItem`]. Status names are the adapter's business
//! (configurable on GitHub); the port speaks in [`ItemStatus`].

use crate::envelope::{ASSIGNEES_FIELD, ASSIGNEES_MAX, WorkItem};
use crate::failure::PortError;
use crate::ids::{BranchName, IdError, ItemId, Login, PrNumber, ProjectKey, RepoName, SpecPath};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// The statuses this system moves an item through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemStatus {
    /// Ready for the agent ("For Implementation").
    Ready,
    /// Enqueued by the producer.
    Queued,
    /// A worker is on it.
    InProgress,
    /// The worker pushed and reported.
    Done,
    /// Dead-lettered, or rejected by validation.
    Failed,
}

impl ItemStatus {
    pub const ALL: [ItemStatus; 5] = [
        ItemStatus::Ready,
        ItemStatus::Queued,
        ItemStatus::InProgress,
        ItemStatus::Done,
        ItemStatus::Failed,
    ];

    /// The default display name (GitHub boards may configure others).
    pub fn default_name(self) -> &'static str {
        match self {
            ItemStatus::Ready => "For Implementation",
            ItemStatus::Queued => "Queued",
            ItemStatus::InProgress => "In Progress",
            ItemStatus::Done => "Done",
            ItemStatus::Failed => "Failed",
        }
    }
}

impl ItemStatus {
    /// Whether an item in this status (`None`: a status this system does not use) still
    /// wants the work done: any of this system's statuses — ready, queued, in progress,
    /// done (the worker's own last move, made just before its build ends) and failed (set
    /// by the consumer when it dead-letters, so a replayed dead letter still runs). A card
    /// in any other column (a backlog, "Todo", "Won't do") was moved away by a human: its
    /// job is cancelled.
    pub fn keeps_work(status: Option<ItemStatus>) -> bool {
        status.is_some()
    }

    /// The statuses the worker may move an item to `self` from: In Progress only from
    /// the active ones (ready, queued, in progress), Done only from In Progress; the
    /// others (set by the producer and the consumer) from any.
    pub fn moved_from(self) -> &'static [ItemStatus] {
        match self {
            ItemStatus::InProgress => &[
                ItemStatus::Ready,
                ItemStatus::Queued,
                ItemStatus::InProgress,
            ],
            ItemStatus::Done => &[ItemStatus::InProgress, ItemStatus::Done],
            _ => &ItemStatus::ALL,
        }
    }
}

/// Where an item stands on the board, as one batched read ([`Board::statuses`]) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardStanding {
    /// On the board in this status (`None`: with no status at all).
    On(Option<ItemStatus>),
    /// On the board in a column this system does not use, named as the board names it
    /// (raw board text: quote it for display): a human moved the card away.
    Away(String),
    /// Not on the board (deleted, archived, or never there).
    Absent,
}

impl BoardStanding {
    /// Whether the card left this system's statuses (in a column of the human's, or with
    /// no status at all), which cancels its item; a card not on the board is left alone.
    pub fn moved_away(&self) -> bool {
        match self {
            BoardStanding::On(status) => !ItemStatus::keeps_work(*status),
            BoardStanding::Away(_) => true,
            BoardStanding::Absent => false,
        }
    }
}

/// What a compare-then-set status change ([`Board::set_status_from`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusChange {
    /// The item was in one of the expected statuses and was moved.
    Moved,
    /// The item was elsewhere (the standing it had): nothing was written.
    Elsewhere(BoardStanding),
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_name())
    }
}

/// An item as the board holds it: every value raw and untrusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardItem {
    pub id: String,
    pub project: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub spec: String,
    #[serde(default)]
    pub pr: String,
    /// The board's last-update marker.
    #[serde(default)]
    pub updated_at: String,
    /// The logins the item is assigned to, as the board has them (GitHub: the assignees
    /// of the item's issue, pull request or draft; the board file: its `assignees` list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignees: Vec<String>,
    /// A problem the adapter found with the item as a whole, such as its id being used by
    /// several items of a board file; validation reports it on the `id` field first, so
    /// the item is rejected by name while the board's other items still go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
}

/// A board item that failed validation: names the item and the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("item {item}: {error}")]
pub struct InvalidItem {
    /// The item id, escaped for display.
    pub item: String,
    #[source]
    pub error: IdError,
}

impl BoardItem {
    /// Parse every field. The first bad field is reported.
    pub fn validate(&self) -> Result<WorkItem, InvalidItem> {
        let wrap = |error: IdError| InvalidItem {
            item: crate::ids::quote_for_display(&self.id),
            error,
        };
        let title: String = self
            .title
            .chars()
            .filter(|c| !c.is_control())
            .take(crate::envelope::TITLE_MAX)
            .collect();
        if let Some(conflict) = &self.conflict {
            return Err(wrap(IdError::new("id", &self.id, conflict.clone())));
        }
        Ok(WorkItem {
            id: ItemId::parse(&self.id).map_err(wrap)?,
            project: ProjectKey::parse(&self.project).map_err(wrap)?,
            repo: RepoName::parse(&self.repo).map_err(wrap)?,
            branch: BranchName::parse(&self.branch).map_err(wrap)?,
            spec: SpecPath::parse(&self.spec).map_err(wrap)?,
            pr: PrNumber::parse(&self.pr).map_err(wrap)?,
            assignees: self.assignee_logins().map_err(wrap)?,
            title,
            updated_at: self
                .updated_at
                .chars()
                .filter(|c| !c.is_control())
                .take(crate::envelope::UPDATED_AT_MAX)
                .collect(),
        })
    }
}

impl BoardItem {
    /// The assignees as logins, in the board's order, each once; the field is
    /// `assignees` in the error, whichever login broke which rule. Stops at the first
    /// login past [`ASSIGNEES_MAX`], so a hostile list costs no more than that.
    fn assignee_logins(&self) -> Result<Vec<Login>, IdError> {
        let mut logins: Vec<Login> = Vec::new();
        for raw in &self.assignees {
            let login = Login::parse(raw).map_err(|e| {
                IdError::new(ASSIGNEES_FIELD, raw, format!("not a login: {}", e.reason))
            })?;
            if logins.contains(&login) {
                continue;
            }
            if logins.len() == ASSIGNEES_MAX {
                return Err(IdError::new(
                    ASSIGNEES_FIELD,
                    raw,
                    format!("more than {ASSIGNEES_MAX} logins (GitHub's limit per issue)"),
                ));
            }
            logins.push(login);
        }
        Ok(logins)
    }
}

#[async_trait]
pub trait Board: Send + Sync + std::fmt::Debug {
    /// Items in the ready status.
    async fn ready_items(&self) -> Result<Vec<BoardItem>, PortError>;
    /// Move an item; `note` (one line, no secrets) is shown on the item, e.g. the reason
    /// it was rejected.
    async fn set_status(
        &self,
        item: &str,
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<(), PortError>;
    /// Where each of `items` stands, in as few reads as the board allows (one file read
    /// on the embedded board; one GraphQL `nodes(ids:)` query per 100 items on GitHub).
    /// Every id asked for is in the answer.
    async fn statuses(
        &self,
        items: &[String],
    ) -> Result<std::collections::HashMap<String, BoardStanding>, PortError>;
    /// Move an item to `status` only while it is in one of `from` (compare, then set):
    /// a card a human moved elsewhere is left where it is. The embedded board compares
    /// and sets in one SQLite transaction over its status overlay; GitHub has no
    /// conditional field update, so there the read and the write are two calls and a move
    /// made between them is overwritten (the window is one round trip).
    async fn set_status_from(
        &self,
        item: &str,
        from: &[ItemStatus],
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<StatusChange, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> BoardItem {
        BoardItem {
            id: "CALC-1".into(),
            project: "calc".into(),
            title: "Add".into(),
            repo: "acme/calc".into(),
            branch: "feature/add".into(),
            spec: ".kiro/specs/add".into(),
            pr: "1".into(),
            updated_at: "1".into(),
            assignees: vec!["octo-cat".into()],
            conflict: None,
        }
    }

    #[test]
    fn assignees_become_logins_and_a_bad_one_rejects_the_item_by_field() {
        let mut b = good();
        b.assignees = vec!["octo-cat".into(), "Copilot".into(), "octo-cat".into()];
        let w = b.validate().unwrap();
        let logins: Vec<&str> = w.assignees.iter().map(Login::as_str).collect();
        assert_eq!(logins, ["octo-cat", "Copilot"], "order kept, each once");
        b.assignees.clear();
        assert!(b.validate().unwrap().assignees.is_empty());
        for bad in ["@octo", "-x", "x-", "a b", "x\n", ""] {
            b.assignees = vec!["ok".into(), bad.into()];
            let e = b.validate().expect_err(bad);
            assert_eq!(e.error.field, "assignees", "{bad}");
            assert!(
                e.to_string()
                    .starts_with("item \"CALC-1\": invalid assignees "),
                "{e}"
            );
        }
        b.assignees = (0..=ASSIGNEES_MAX).map(|n| format!("user{n}")).collect();
        let e = b.validate().unwrap_err();
        assert_eq!(e.error.field, "assignees");
        assert!(e.error.reason.contains("more than 10"), "{e}");
        b.assignees.pop();
        assert_eq!(b.validate().unwrap().assignees.len(), ASSIGNEES_MAX);
        // Repeats do not count: ten logins, each listed many times, are ten.
        b.assignees = b.assignees.iter().cycle().take(1000).cloned().collect();
        assert_eq!(b.validate().unwrap().assignees.len(), ASSIGNEES_MAX);
    }

    #[test]
    fn an_adapter_conflict_rejects_the_item_on_its_id() {
        let mut b = good();
        b.conflict = Some("used by 2 items (board lines 2, 9); ids must be unique".into());
        let e = b.validate().unwrap_err();
        assert_eq!(e.error.field, "id");
        assert_eq!(
            e.to_string(),
            "item \"CALC-1\": invalid id \"CALC-1\": used by 2 items (board lines 2, 9); ids must be unique"
        );
    }

    #[test]
    fn only_a_column_outside_this_systems_statuses_cancels() {
        for s in [
            ItemStatus::Ready,
            ItemStatus::Queued,
            ItemStatus::InProgress,
            ItemStatus::Done,
        ] {
            assert!(ItemStatus::keeps_work(Some(s)), "{s}");
        }
        assert!(
            ItemStatus::keeps_work(Some(ItemStatus::Failed)),
            "a replayed dead letter runs"
        );
        assert!(
            !ItemStatus::keeps_work(None),
            "a column of the human's cancels"
        );
        assert!(!ItemStatus::Done.moved_from().contains(&ItemStatus::Ready));
        assert!(
            !ItemStatus::InProgress
                .moved_from()
                .contains(&ItemStatus::Failed)
        );
    }

    #[test]
    fn a_card_moved_away_or_left_without_a_status_cancels_and_an_absent_one_does_not() {
        assert!(BoardStanding::Away("Backlog".into()).moved_away());
        assert!(BoardStanding::On(None).moved_away());
        for s in ItemStatus::ALL {
            assert!(!BoardStanding::On(Some(s)).moved_away(), "{s}");
        }
        assert!(
            !BoardStanding::Absent.moved_away(),
            "not on the board: left alone"
        );
    }

    #[test]
    fn a_good_item_validates() {
        let w = good().validate().unwrap();
        assert_eq!(w.spec.as_str(), ".kiro/specs/add");
    }

    #[test]
    fn the_error_names_item_and_field() {
        let mut b = good();
        b.spec = "../../etc".into();
        let e = b.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "item \"CALC-1\": invalid spec \"../../etc\": must stay inside .kiro/specs/"
        );
    }
}
