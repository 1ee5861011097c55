//! [`GithubBoard`]: the `Board` port over a GitHub Projects (v2) board.
//!
//! Reading: one GraphQL query per page of 100 items (`items(first: 100, after: $cursor)`),
//! following `pageInfo.endCursor` until `hasNextPage` is false; archived items are skipped;
//! an item is *ready* when its single-select status field (default "Status") shows the
//! name configured for [`ItemStatus::Ready`]. Each ready item is returned raw — the producer
//! validates it with [`BoardItem::validate`] — with these rules:
//!
//! - **pull request**: the item's content when it is a pull request; when it is an issue,
//!   the first *open* pull request in the issue's `closedByPullRequestsReferences` (the pull
//!   requests that close it, as GitHub orders them); a draft issue, an issue without an open
//!   closing pull request, or content the token cannot see leaves `repo`, `branch` and `pr`
//!   empty, so validation names the missing field;
//! - **repo** `owner/name` and **branch** (the head ref) come from that pull request;
//! - **spec**: the text field named [`FieldConfig::spec_field`] (default "Spec") when set,
//!   else derived from the branch: `feature/<name>` → `.kiro/specs/<name>` (the prefixes are
//!   [`FieldConfig::spec_branch_prefixes`]); any other branch leaves it empty;
//! - **project** key ([`ProjectKeyRule`], default: the text field "Project" when set, else
//!   the repository's name without its owner; an item with no repository gets the board's
//!   own key `<owner>-<number>` so validation names the repository, not the key);
//! - **updated_at**: the item's `updatedAt`;
//! - **assignees**: the logins of the content's `assignees(first: 10)` (an issue's, a pull
//!   request's or a draft's; GitHub allows 10 per issue), in GitHub's order.
//!
//! Writing: `updateProjectV2ItemFieldValue` with the status option's id; the project id,
//! field ids and option ids are looked up once per board and cached. A note is written to
//! the text field [`FieldConfig::note_field`] (default "Kiro note") in the same mutation
//! when the project has one, else only logged; `None` leaves the field as it was.
//!
//! Where items stand (`statuses`, for the consumer's cancellation check): one `nodes(ids:
//! …)` query per 100 items (`standing`). `set_status_from` reads the item's standing,
//! then writes: GitHub has no conditional field update, so a move made between the two
//! calls is overwritten (the window is one round trip).
//!
//! Layout: `config` (the project, field names and the status mapping), `items` (the
//! items query and how an item node becomes a `BoardItem`), `meta` (the ids a status write
//! needs, and the mutations), `standing` (the `nodes` query); this file is the port itself
//! (paging, caching, writing).
//!
//! Invariant: this module never drops an item silently: a ready item comes back (maybe with
//! empty fields), and a GraphQL partial error comes back as a warning beside the data.

mod config;
#[cfg(test)]
mod fixtures_match;
mod items;
mod meta;
mod standing;

pub use config::{FieldConfig, OwnerKind, ProjectKeyRule, ProjectRef};

use super::client::GithubClient;
use super::graphql::{mutate, query};
use super::settings::GithubSettings;
use crate::redact::redact;
use async_trait::async_trait;
use config::same_name;
use items::{ITEMS_QUERY, ItemsPage};
use kiro_protocol::{Board, BoardItem, BoardStanding, ItemStatus, PortError, StatusChange};
use meta::{FIELDS_QUERY, ProjectMeta, SET_STATUS, SET_STATUS_AND_NOTE};
use serde_json::{Value, json};
use standing::{NODES_PER_QUERY, STATUSES_QUERY};
use std::collections::HashMap;
use tokio::sync::OnceCell;
use tracing::{info, instrument, warn};

/// The ready items of one scan and the partial errors GitHub reported beside them.
#[derive(Debug, Clone, Default)]
pub struct ReadyItems {
    pub items: Vec<BoardItem>,
    pub warnings: Vec<String>,
    /// Items looked at (all pages, archived ones included).
    pub scanned: usize,
    pub pages: usize,
}

/// The maximum pages read per scan (100 items each): a guard against a cursor that never ends.
const MAX_PAGES: usize = 500;

/// A Projects (v2) board.
#[derive(Debug)]
pub struct GithubBoard {
    client: GithubClient,
    project: ProjectRef,
    fields: FieldConfig,
    meta: OnceCell<ProjectMeta>,
}

impl GithubBoard {
    /// A board over `project` with `fields`' names.
    pub fn new(
        settings: GithubSettings,
        project: ProjectRef,
        fields: FieldConfig,
    ) -> Result<Self, PortError> {
        Ok(GithubBoard::with_client(
            GithubClient::new(settings)?,
            project,
            fields,
        ))
    }

    /// Share a client (and its token cache) with other adapters.
    pub fn with_client(client: GithubClient, project: ProjectRef, fields: FieldConfig) -> Self {
        GithubBoard {
            client,
            project,
            fields,
            meta: OnceCell::new(),
        }
    }

    pub fn project(&self) -> &ProjectRef {
        &self.project
    }

    fn variables(&self) -> Value {
        json!({ "owner": self.project.owner, "number": self.project.number })
    }

    fn project_node<'a>(
        &self,
        data: &'a Value,
        warnings: &[String],
    ) -> Result<&'a Value, PortError> {
        data.pointer("/owner/projectV2")
            .filter(|v| !v.is_null())
            .ok_or_else(|| {
                PortError::input(format!(
                    "GitHub project {} not found or not visible to these credentials{}",
                    self.project,
                    if warnings.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", warnings.join("; "))
                    }
                ))
            })
    }

    /// Scan every item and return the ready ones with the scan's partial errors.
    #[instrument(skip_all, fields(project = %self.project))]
    pub async fn ready_items_report(&self) -> Result<ReadyItems, PortError> {
        let document = ITEMS_QUERY.replace("OWNER", self.project.owner_field());
        let ready = self.fields.status_name(ItemStatus::Ready).to_owned();
        let mut out = ReadyItems::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut vars = self.variables();
            vars["cursor"] = json!(cursor);
            let outcome =
                query(&self.client, &document, vars, "reading the project's items").await?;
            out.pages += 1;
            out.warnings.extend(outcome.warnings.iter().cloned());
            let project = self.project_node(&outcome.data, &outcome.warnings)?;
            let page: ItemsPage =
                serde_json::from_value(project.get("items").cloned().unwrap_or(Value::Null))
                    .map_err(|e| {
                        PortError::transient(format!("unexpected items page from GitHub: {e}"))
                    })?;
            for node in page.nodes.into_iter().flatten() {
                out.scanned += 1;
                if node.is_archived {
                    continue;
                }
                if items::status_of(&node, &self.fields).is_some_and(|s| same_name(s, &ready)) {
                    out.items
                        .push(items::to_board_item(node, &self.fields, &self.project));
                }
            }
            let next = page
                .page_info
                .end_cursor
                .filter(|_| page.page_info.has_next_page);
            match next {
                Some(c) if Some(&c) != cursor.as_ref() && out.pages < MAX_PAGES => cursor = Some(c),
                Some(_) => {
                    let w = format!(
                        "stopped paging after {} pages (cursor did not advance or page limit)",
                        out.pages
                    );
                    warn!("{w}");
                    out.warnings.push(w);
                    break;
                }
                None => break,
            }
        }
        info!(
            scanned = out.scanned,
            ready = out.items.len(),
            pages = out.pages,
            warnings = out.warnings.len(),
            "board scanned"
        );
        Ok(out)
    }

    async fn meta(&self) -> Result<&ProjectMeta, PortError> {
        self.meta.get_or_try_init(|| self.load_meta()).await
    }

    #[instrument(skip_all, fields(project = %self.project))]
    async fn load_meta(&self) -> Result<ProjectMeta, PortError> {
        let document = FIELDS_QUERY.replace("OWNER", self.project.owner_field());
        let outcome = query(
            &self.client,
            &document,
            self.variables(),
            "reading the project's fields",
        )
        .await?;
        let project = self.project_node(&outcome.data, &outcome.warnings)?;
        ProjectMeta::parse(project, &self.fields, &self.project)
    }
}

/// One line, at most 1,000 characters, redacted.
fn note_text(note: &str) -> String {
    let line: String = note
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    redact(line.trim())
}

#[async_trait]
impl Board for GithubBoard {
    async fn ready_items(&self) -> Result<Vec<BoardItem>, PortError> {
        Ok(self.ready_items_report().await?.items)
    }

    #[instrument(skip_all, fields(project = %self.project, item = %kiro_protocol::ids::quote_for_display(item), status = %status))]
    async fn set_status(
        &self,
        item: &str,
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<(), PortError> {
        let meta = self.meta().await?;
        let option = meta.option_for(status, &self.fields, &self.project)?;
        let mut vars = json!({
            "project": meta.project_id,
            "item": item,
            "field": meta.status_field_id,
            "option": option,
        });
        let note = note.map(note_text);
        let document = match (&note, &meta.note_field_id) {
            (Some(text), Some(field)) => {
                vars["noteField"] = json!(field);
                vars["note"] = json!(text);
                SET_STATUS_AND_NOTE
            }
            (Some(text), None) => {
                info!(note = %text, "board note (the project has no note field)");
                SET_STATUS
            }
            (None, _) => SET_STATUS,
        };
        mutate(&self.client, document, vars, "updating the item's status").await?;
        info!("status set");
        Ok(())
    }

    #[instrument(skip_all, fields(project = %self.project, items = items.len()))]
    async fn statuses(
        &self,
        items: &[String],
    ) -> Result<HashMap<String, BoardStanding>, PortError> {
        let mut out = HashMap::new();
        for chunk in items.chunks(NODES_PER_QUERY) {
            let vars = json!({ "ids": chunk, "field": self.fields.status_field });
            let outcome = query(
                &self.client,
                STATUSES_QUERY,
                vars,
                "reading the items' statuses",
            )
            .await?;
            let nodes = outcome.data.get("nodes").cloned().unwrap_or(Value::Null);
            standing::read_nodes(&nodes, chunk, &self.fields, &mut out);
        }
        Ok(out)
    }

    async fn set_status_from(
        &self,
        item: &str,
        from: &[ItemStatus],
        status: ItemStatus,
        note: Option<&str>,
    ) -> Result<StatusChange, PortError> {
        // Compare, then set: two calls (see the module header for the window).
        let standing = self
            .statuses(&[item.to_owned()])
            .await?
            .remove(item)
            .unwrap_or(BoardStanding::Absent);
        match standing {
            BoardStanding::On(Some(now)) if from.contains(&now) => {
                self.set_status(item, status, note).await?;
                Ok(StatusChange::Moved)
            }
            other => {
                info!(item = %kiro_protocol::ids::quote_for_display(item), now = ?other, "item is not where it was expected; left where it is");
                Ok(StatusChange::Elsewhere(other))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_one_redacted_line() {
        assert_eq!(
            note_text("bad\nspec ghp_abcdefghijklmnop"),
            "bad spec [REDACTED]"
        );
    }
}
