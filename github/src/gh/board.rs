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
//! - **updated_at**: the item's `updatedAt`.
//!
//! Writing: `updateProjectV2ItemFieldValue` with the status option's id; the project id,
//! field ids and option ids are looked up once per board and cached. A note is written to
//! the text field [`FieldConfig::note_field`] (default "Kiro note") in the same mutation
//! when the project has one, else only logged; `None` leaves the field as it was.
//!
//! Invariant: this module never drops an item silently: a ready item comes back (maybe with
//! empty fields), and a GraphQL partial error comes back as a warning beside the data.

use super::client::GithubClient;
use super::graphql::{mutate, query};
use super::settings::GithubSettings;
use crate::redact::redact;
use async_trait::async_trait;
use kiro_protocol::{Board, BoardItem, FailureClass, ItemStatus, PortError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use tokio::sync::OnceCell;
use tracing::{info, instrument, warn};

/// Whose project it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    Org,
    User,
}

/// A project: `orgs/<owner>/<number>` or `users/<owner>/<number>` (as in its URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRef {
    pub owner: String,
    pub owner_kind: OwnerKind,
    pub number: u32,
}

impl ProjectRef {
    /// Parse `orgs/acme/7`, `users/alice/3`, or the project's URL
    /// (`https://github.com/orgs/acme/projects/7`).
    pub fn parse(raw: &str) -> Result<Self, PortError> {
        let bad = || {
            PortError::input(format!(
                "invalid GitHub project {}: expected orgs/<owner>/<number> or users/<owner>/<number>",
                kiro_protocol::ids::quote_for_display(raw)
            ))
        };
        let trimmed = raw
            .trim()
            .trim_start_matches("https://github.com/")
            .trim_end_matches('/');
        let parts: Vec<&str> = trimmed.split('/').filter(|p| *p != "projects").collect();
        let [kind, owner, number] = parts.as_slice() else {
            return Err(bad());
        };
        let owner_kind = match *kind {
            "orgs" | "org" => OwnerKind::Org,
            "users" | "user" => OwnerKind::User,
            _ => return Err(bad()),
        };
        if owner.is_empty()
            || !owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad());
        }
        Ok(ProjectRef {
            owner: (*owner).to_owned(),
            owner_kind,
            number: number.parse().map_err(|_| bad())?,
        })
    }

    /// The board's own key, `<owner>-<number>`.
    pub fn key(&self) -> String {
        format!("{}-{}", self.owner, self.number)
    }

    fn owner_field(&self) -> &'static str {
        match self.owner_kind {
            OwnerKind::Org => "organization",
            OwnerKind::User => "user",
        }
    }
}

impl fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.owner_kind {
            OwnerKind::Org => "orgs",
            OwnerKind::User => "users",
        };
        write!(f, "{kind}/{}/{}", self.owner, self.number)
    }
}

/// How an item's project key (the unit of ordering and mutual exclusion) is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectKeyRule {
    /// The text field of this name when set, else the repository's name.
    FieldOrRepoName(String),
    /// The repository's name (without the owner).
    RepoName,
    /// The same key for every item of the board.
    Fixed(String),
}

/// Field and option names on the board.
#[derive(Debug, Clone)]
pub struct FieldConfig {
    /// The single-select status field.
    pub status_field: String,
    /// Option names per status; missing entries use [`ItemStatus::default_name`].
    pub status_names: HashMap<ItemStatus, String>,
    /// A text field holding the spec path.
    pub spec_field: String,
    /// Branch prefixes from which the spec name is derived (`feature/` → `.kiro/specs/<rest>`).
    pub spec_branch_prefixes: Vec<String>,
    /// A text field for notes (rejections, dead-letter reasons).
    pub note_field: String,
    pub project_key: ProjectKeyRule,
}

impl Default for FieldConfig {
    fn default() -> Self {
        FieldConfig {
            status_field: "Status".into(),
            status_names: HashMap::new(),
            spec_field: "Spec".into(),
            spec_branch_prefixes: vec!["feature/".into()],
            note_field: "Kiro note".into(),
            project_key: ProjectKeyRule::FieldOrRepoName("Project".into()),
        }
    }
}

impl FieldConfig {
    /// The board's option name for `status`.
    pub fn status_name(&self, status: ItemStatus) -> &str {
        self.status_names
            .get(&status)
            .map(String::as_str)
            .unwrap_or_else(|| status.default_name())
    }

    /// Use `name` for `status`.
    pub fn with_status_name(mut self, status: ItemStatus, name: impl Into<String>) -> Self {
        self.status_names.insert(status, name.into());
        self
    }

    /// The spec path for `branch` by the prefix rule, or empty.
    pub fn spec_from_branch(&self, branch: &str) -> String {
        self.spec_branch_prefixes
            .iter()
            .find_map(|p| branch.strip_prefix(p.as_str()))
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!(".kiro/specs/{rest}"))
            .unwrap_or_default()
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The ready items of one scan and the partial errors GitHub reported beside them.
#[derive(Debug, Clone, Default)]
pub struct ReadyItems {
    pub items: Vec<BoardItem>,
    pub warnings: Vec<String>,
    /// Items looked at (all pages, archived ones included).
    pub scanned: usize,
    pub pages: usize,
}

// ---- wire shapes -------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    #[serde(default)]
    has_next_page: bool,
    #[serde(default)]
    end_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ItemsPage {
    #[serde(default)]
    page_info: PageInfo,
    #[serde(default)]
    nodes: Vec<Option<ItemNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ItemNode {
    id: String,
    #[serde(default)]
    is_archived: bool,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    field_values: Option<Nodes<Option<FieldValue>>>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
struct Nodes<T> {
    #[serde(default = "Vec::new")]
    nodes: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct FieldRef {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldValue {
    #[serde(rename = "__typename", default)]
    typename: String,
    /// Single-select option name.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    field: Option<FieldRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Repository {
    name_with_owner: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrRef {
    number: u64,
    #[serde(default)]
    head_ref_name: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    repository: Option<Repository>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    #[serde(rename = "__typename", default)]
    typename: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    number: Option<u64>,
    #[serde(default)]
    head_ref_name: Option<String>,
    #[serde(default)]
    repository: Option<Repository>,
    #[serde(default)]
    closed_by_pull_requests_references: Option<Nodes<Option<PrRef>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldDef {
    #[serde(rename = "__typename", default)]
    typename: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    data_type: Option<String>,
    #[serde(default)]
    options: Vec<OptionDef>,
}

#[derive(Debug, Deserialize)]
struct OptionDef {
    id: String,
    name: String,
}

/// Ids looked up once per board.
#[derive(Debug, Clone)]
struct ProjectMeta {
    project_id: String,
    status_field_id: String,
    /// Option name (as on the board) → option id.
    options: Vec<(String, String)>,
    note_field_id: Option<String>,
}

const ITEMS_QUERY: &str = r#"query($owner: String!, $number: Int!, $cursor: String) {
  owner: OWNER(login: $owner) {
    projectV2(number: $number) {
      id
      items(first: 100, after: $cursor) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id
          isArchived
          updatedAt
          fieldValues(first: 50) {
            nodes {
              __typename
              ... on ProjectV2ItemFieldSingleSelectValue { name optionId field { ... on ProjectV2FieldCommon { name } } }
              ... on ProjectV2ItemFieldTextValue { text field { ... on ProjectV2FieldCommon { name } } }
            }
          }
          content {
            __typename
            ... on DraftIssue { title }
            ... on PullRequest { number title headRefName state repository { nameWithOwner } }
            ... on Issue {
              number title repository { nameWithOwner }
              closedByPullRequestsReferences(first: 10, includeClosedPrs: false) {
                nodes { number headRefName state repository { nameWithOwner } }
              }
            }
          }
        }
      }
    }
  }
}"#;

const FIELDS_QUERY: &str = r#"query($owner: String!, $number: Int!) {
  owner: OWNER(login: $owner) {
    projectV2(number: $number) {
      id
      fields(first: 100) {
        nodes {
          __typename
          ... on ProjectV2FieldCommon { id name dataType }
          ... on ProjectV2SingleSelectField { options { id name } }
        }
      }
    }
  }
}"#;

const SET_STATUS: &str = r#"mutation($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  status: updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field, value: {singleSelectOptionId: $option}}) { projectV2Item { id } }
}"#;

const SET_STATUS_AND_NOTE: &str = r#"mutation($project: ID!, $item: ID!, $field: ID!, $option: String!, $noteField: ID!, $note: String!) {
  status: updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field, value: {singleSelectOptionId: $option}}) { projectV2Item { id } }
  note: updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $noteField, value: {text: $note}}) { projectV2Item { id } }
}"#;

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
                if self.status_of(&node).is_some_and(|s| same_name(s, &ready)) {
                    out.items.push(self.to_board_item(node));
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

    fn field_values(node: &ItemNode) -> impl Iterator<Item = &FieldValue> {
        node.field_values
            .iter()
            .flat_map(|f| f.nodes.iter())
            .flatten()
    }

    fn status_of<'a>(&self, node: &'a ItemNode) -> Option<&'a str> {
        Self::field_values(node)
            .find(|v| {
                v.typename == "ProjectV2ItemFieldSingleSelectValue"
                    && v.field
                        .as_ref()
                        .and_then(|f| f.name.as_deref())
                        .is_some_and(|n| same_name(n, &self.fields.status_field))
            })
            .and_then(|v| v.name.as_deref())
    }

    fn text_of<'a>(node: &'a ItemNode, field: &str) -> Option<&'a str> {
        Self::field_values(node)
            .find(|v| {
                v.typename == "ProjectV2ItemFieldTextValue"
                    && v.field
                        .as_ref()
                        .and_then(|f| f.name.as_deref())
                        .is_some_and(|n| same_name(n, field))
            })
            .and_then(|v| v.text.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    fn to_board_item(&self, node: ItemNode) -> BoardItem {
        let mut item = BoardItem {
            id: node.id.clone(),
            updated_at: node.updated_at.clone().unwrap_or_default(),
            ..BoardItem::default()
        };
        if let Some(content) = &node.content {
            item.title = content.title.clone().unwrap_or_default();
            let pr: Option<(String, String, u64)> = match content.typename.as_str() {
                "PullRequest" => Some((
                    content
                        .repository
                        .as_ref()
                        .map(|r| r.name_with_owner.clone())
                        .unwrap_or_default(),
                    content.head_ref_name.clone().unwrap_or_default(),
                    content.number.unwrap_or_default(),
                )),
                "Issue" => content
                    .closed_by_pull_requests_references
                    .iter()
                    .flat_map(|n| n.nodes.iter())
                    .flatten()
                    .find(|p| p.state.as_deref() == Some("OPEN"))
                    .map(|p| {
                        (
                            p.repository
                                .as_ref()
                                .map(|r| r.name_with_owner.clone())
                                .unwrap_or_default(),
                            p.head_ref_name.clone().unwrap_or_default(),
                            p.number,
                        )
                    }),
                _ => None,
            };
            if let Some((repo, branch, number)) = pr {
                item.repo = repo;
                item.branch = branch;
                item.pr = if number == 0 {
                    String::new()
                } else {
                    number.to_string()
                };
            }
        }
        item.spec = match Self::text_of(&node, &self.fields.spec_field) {
            Some(s) => s.to_owned(),
            None => self.fields.spec_from_branch(&item.branch),
        };
        let repo_name = item
            .repo
            .split_once('/')
            .map(|(_, n)| n.to_owned())
            .filter(|n| !n.is_empty());
        let repo_or_board = || repo_name.clone().unwrap_or_else(|| self.project.key());
        item.project = match &self.fields.project_key {
            ProjectKeyRule::FieldOrRepoName(field) => Self::text_of(&node, field)
                .map(str::to_owned)
                .unwrap_or_else(repo_or_board),
            ProjectKeyRule::RepoName => repo_or_board(),
            ProjectKeyRule::Fixed(k) => k.clone(),
        };
        item
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
        let project_id = project
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| PortError::transient("GitHub returned a project without an id"))?
            .to_owned();
        let defs: Vec<Option<FieldDef>> = serde_json::from_value(
            project
                .pointer("/fields/nodes")
                .cloned()
                .unwrap_or(Value::Array(vec![])),
        )
        .map_err(|e| PortError::transient(format!("unexpected project fields from GitHub: {e}")))?;
        let defs: Vec<FieldDef> = defs.into_iter().flatten().collect();
        let status = defs
            .iter()
            .find(|d| {
                d.typename == "ProjectV2SingleSelectField"
                    && d.name
                        .as_deref()
                        .is_some_and(|n| same_name(n, &self.fields.status_field))
            })
            .ok_or_else(|| {
                PortError::input(format!(
                    "GitHub project {} has no single-select field named {:?}",
                    self.project, self.fields.status_field
                ))
            })?;
        let note_field_id = defs
            .iter()
            .find(|d| {
                d.data_type.as_deref() == Some("TEXT")
                    && d.name
                        .as_deref()
                        .is_some_and(|n| same_name(n, &self.fields.note_field))
            })
            .and_then(|d| d.id.clone());
        if note_field_id.is_none() {
            info!(field = %self.fields.note_field, "the project has no note field; notes are only logged");
        }
        Ok(ProjectMeta {
            project_id,
            status_field_id: status.id.clone().ok_or_else(|| {
                PortError::transient("GitHub returned the status field without an id")
            })?,
            options: status
                .options
                .iter()
                .map(|o| (o.name.clone(), o.id.clone()))
                .collect(),
            note_field_id,
        })
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
        let wanted = self.fields.status_name(status);
        let option = meta
            .options
            .iter()
            .find(|(name, _)| same_name(name, wanted))
            .map(|(_, id)| id.clone())
            .ok_or_else(|| {
                PortError::new(
                    FailureClass::PermanentInput,
                    format!(
                        "GitHub project {} has no option {wanted:?} in its {:?} field (options: {})",
                        self.project,
                        self.fields.status_field,
                        meta.options.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            })?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_refs() {
        let p = ProjectRef::parse("orgs/acme/7").unwrap();
        assert_eq!(
            (p.owner.as_str(), p.owner_kind, p.number),
            ("acme", OwnerKind::Org, 7)
        );
        let p = ProjectRef::parse("https://github.com/users/alice/projects/3").unwrap();
        assert_eq!(
            (p.owner.as_str(), p.owner_kind, p.number),
            ("alice", OwnerKind::User, 3)
        );
        assert_eq!(p.to_string(), "users/alice/3");
        assert_eq!(p.key(), "alice-3");
        for bad in ["acme/7", "orgs/acme/x", "orgs/a b/1", "teams/acme/1", ""] {
            assert!(ProjectRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_from_branch_rule() {
        let f = FieldConfig::default();
        assert_eq!(
            f.spec_from_branch("feature/add-login"),
            ".kiro/specs/add-login"
        );
        assert_eq!(f.spec_from_branch("main"), "");
        assert_eq!(f.spec_from_branch("feature/"), "");
        let f = FieldConfig {
            spec_branch_prefixes: vec!["kiro/".into(), "feature/".into()],
            ..FieldConfig::default()
        };
        assert_eq!(f.spec_from_branch("kiro/x"), ".kiro/specs/x");
    }

    #[test]
    fn status_names_configurable() {
        let f = FieldConfig::default().with_status_name(ItemStatus::Ready, "Todo");
        assert_eq!(f.status_name(ItemStatus::Ready), "Todo");
        assert_eq!(f.status_name(ItemStatus::Done), "Done");
    }

    #[test]
    fn notes_are_one_redacted_line() {
        assert_eq!(
            note_text("bad\nspec ghp_abcdefghijklmnop"),
            "bad spec [REDACTED]"
        );
    }
}
