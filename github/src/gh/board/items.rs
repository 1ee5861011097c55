//! Reading a board's items: the GraphQL query of one page of items, the shapes it comes
//! back in, and how one item node becomes a [`BoardItem`] (the rules are in the header
//! of [`super`]).
//!
//! Invariant: pure parsing; an item whose content is missing or not visible still becomes
//! a `BoardItem` (with empty fields), never an error.

use super::config::{FieldConfig, ProjectKeyRule, ProjectRef, same_name};
use kiro_protocol::BoardItem;
use serde::Deserialize;

/// One page of a project's items (`OWNER` is replaced by `organization` or `user`).
pub(super) const ITEMS_QUERY: &str = r#"query($owner: String!, $number: Int!, $cursor: String) {
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
            ... on DraftIssue { title assignees(first: 10) { nodes { login } } }
            ... on PullRequest {
              number title headRefName state repository { nameWithOwner }
              assignees(first: 10) { nodes { login } }
            }
            ... on Issue {
              number title repository { nameWithOwner }
              assignees(first: 10) { nodes { login } }
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

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct PageInfo {
    #[serde(default)]
    pub(super) has_next_page: bool,
    #[serde(default)]
    pub(super) end_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemsPage {
    #[serde(default)]
    pub(super) page_info: PageInfo,
    #[serde(default)]
    pub(super) nodes: Vec<Option<ItemNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemNode {
    id: String,
    #[serde(default)]
    pub(super) is_archived: bool,
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
    /// The people (and bots) the issue, pull request or draft is assigned to.
    #[serde(default)]
    assignees: Option<Nodes<Option<Actor>>>,
}

#[derive(Debug, Deserialize)]
struct Actor {
    #[serde(default)]
    login: String,
}

fn field_values(node: &ItemNode) -> impl Iterator<Item = &FieldValue> {
    node.field_values
        .iter()
        .flat_map(|f| f.nodes.iter())
        .flatten()
}

/// The option the item shows in the status field of `fields`.
pub(super) fn status_of<'a>(node: &'a ItemNode, fields: &FieldConfig) -> Option<&'a str> {
    field_values(node)
        .find(|v| {
            v.typename == "ProjectV2ItemFieldSingleSelectValue"
                && v.field
                    .as_ref()
                    .and_then(|f| f.name.as_deref())
                    .is_some_and(|n| same_name(n, &fields.status_field))
        })
        .and_then(|v| v.name.as_deref())
}

fn text_of<'a>(node: &'a ItemNode, field: &str) -> Option<&'a str> {
    field_values(node)
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

/// A ready item as the `Board` port returns it (raw: the producer validates it), by the
/// rules of the module header of [`super`].
pub(super) fn to_board_item(node: ItemNode, fields: &FieldConfig, board: &ProjectRef) -> BoardItem {
    let mut item = BoardItem {
        id: node.id.clone(),
        updated_at: node.updated_at.clone().unwrap_or_default(),
        ..BoardItem::default()
    };
    if let Some(content) = &node.content {
        item.title = content.title.clone().unwrap_or_default();
        item.assignees = content
            .assignees
            .iter()
            .flat_map(|n| n.nodes.iter())
            .flatten()
            .map(|a| a.login.clone())
            .collect();
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
    item.spec = match text_of(&node, &fields.spec_field) {
        Some(s) => s.to_owned(),
        None => fields.spec_from_branch(&item.branch),
    };
    let repo_name = item
        .repo
        .split_once('/')
        .map(|(_, n)| n.to_owned())
        .filter(|n| !n.is_empty());
    let repo_or_board = || repo_name.clone().unwrap_or_else(|| board.key());
    item.project = match &fields.project_key {
        ProjectKeyRule::FieldOrRepoName(field) => text_of(&node, field)
            .map(str::to_owned)
            .unwrap_or_else(repo_or_board),
        ProjectKeyRule::RepoName => repo_or_board(),
        ProjectKeyRule::Fixed(k) => k.clone(),
    };
    item
}
