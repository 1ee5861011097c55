//! Where items stand: ONE GraphQL `nodes(ids: …)` query per 100 items reads each item's
//! status option by field name (`fieldValueByName`), for the consumer's cancellation
//! check and the worker's compare-then-set.
//!
//! Invariant: every id asked for comes back: a node GitHub cannot resolve (deleted, or
//! not visible; GitHub answers `null` with a NOT_FOUND error beside the data) or an
//! archived item is `Absent`; an item with an option this system does not map stands
//! `Away(option name)`, one without a status `On(None)`.

use super::config::{FieldConfig, same_name};
use kiro_protocol::{BoardStanding, ItemStatus};
use serde::Deserialize;
use std::collections::HashMap;

/// Most ids per `nodes` query (GitHub's limit).
pub(super) const NODES_PER_QUERY: usize = 100;

/// The status of up to 100 items.
pub(super) const STATUSES_QUERY: &str = r#"query($ids: [ID!]!, $field: String!) {
  nodes(ids: $ids) {
    __typename
    ... on ProjectV2Item {
      id
      isArchived
      status: fieldValueByName(name: $field) {
        __typename
        ... on ProjectV2ItemFieldSingleSelectValue { name }
      }
    }
  }
}"#;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    is_archived: bool,
    #[serde(default)]
    status: Option<StatusValue>,
}

#[derive(Debug, Deserialize)]
struct StatusValue {
    #[serde(default)]
    name: Option<String>,
}

/// The status `name` maps to under `fields` (`None`: an option this system does not use).
pub(super) fn status_named(name: &str, fields: &FieldConfig) -> Option<ItemStatus> {
    ItemStatus::ALL
        .into_iter()
        .find(|s| same_name(fields.status_name(*s), name))
}

/// Read one `nodes` answer (`data.nodes`) into `out` for the ids asked.
pub(super) fn read_nodes(
    nodes: &serde_json::Value,
    asked: &[String],
    fields: &FieldConfig,
    out: &mut HashMap<String, BoardStanding>,
) {
    let list: Vec<Option<Node>> = nodes
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| serde_json::from_value(v.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    // GitHub answers in the order asked; matched by id all the same.
    let by_id: HashMap<&str, &Node> = list
        .iter()
        .flatten()
        .filter_map(|n| n.id.as_deref().map(|id| (id, n)))
        .collect();
    for id in asked {
        let standing = match by_id.get(id.as_str()) {
            Some(n) if !n.is_archived => match n.status.as_ref().and_then(|s| s.name.as_deref()) {
                Some(name) => status_named(name, fields).map_or_else(
                    || BoardStanding::Away(name.to_owned()),
                    |s| BoardStanding::On(Some(s)),
                ),
                None => BoardStanding::On(None),
            },
            _ => BoardStanding::Absent,
        };
        out.insert(id.clone(), standing);
    }
}
