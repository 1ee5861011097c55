//! What a status write needs: the project's id, the status field's id and options and the
//! note field's id, read once per board (the GraphQL query of the project's fields), and
//! the mutations that write a status (and a note).
//!
//! Invariant: an [`ItemStatus`] is written as the id of the option [`FieldConfig`] names
//! for it; a missing status field or option is permanent input naming what is missing.

use super::config::{FieldConfig, ProjectRef, same_name};
use kiro_protocol::{FailureClass, ItemStatus, PortError};
use serde::Deserialize;
use serde_json::Value;
use tracing::info;

/// The project's fields (`OWNER` is replaced by `organization` or `user`).
pub(super) const FIELDS_QUERY: &str = r#"query($owner: String!, $number: Int!) {
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

/// Set the status option of an item.
pub(super) const SET_STATUS: &str = r#"mutation($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  status: updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field, value: {singleSelectOptionId: $option}}) { projectV2Item { id } }
}"#;

/// Set the status option and the note text of an item.
pub(super) const SET_STATUS_AND_NOTE: &str = r#"mutation($project: ID!, $item: ID!, $field: ID!, $option: String!, $noteField: ID!, $note: String!) {
  status: updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field, value: {singleSelectOptionId: $option}}) { projectV2Item { id } }
  note: updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $noteField, value: {text: $note}}) { projectV2Item { id } }
}"#;

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
pub(super) struct ProjectMeta {
    pub(super) project_id: String,
    pub(super) status_field_id: String,
    /// Option name (as on the board) → option id.
    options: Vec<(String, String)>,
    pub(super) note_field_id: Option<String>,
}

impl ProjectMeta {
    /// The ids in `project` (the `projectV2` node of the fields query) for `fields`' names.
    pub(super) fn parse(
        project: &Value,
        fields: &FieldConfig,
        board: &ProjectRef,
    ) -> Result<Self, PortError> {
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
                        .is_some_and(|n| same_name(n, &fields.status_field))
            })
            .ok_or_else(|| {
                PortError::input(format!(
                    "GitHub project {} has no single-select field named {:?}",
                    board, fields.status_field
                ))
            })?;
        let note_field_id = defs
            .iter()
            .find(|d| {
                d.data_type.as_deref() == Some("TEXT")
                    && d.name
                        .as_deref()
                        .is_some_and(|n| same_name(n, &fields.note_field))
            })
            .and_then(|d| d.id.clone());
        if note_field_id.is_none() {
            info!(field = %fields.note_field, "the project has no note field; notes are only logged");
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

    /// The id of the option `fields` names for `status`.
    pub(super) fn option_for(
        &self,
        status: ItemStatus,
        fields: &FieldConfig,
        board: &ProjectRef,
    ) -> Result<String, PortError> {
        let wanted = fields.status_name(status);
        self.options
            .iter()
            .find(|(name, _)| same_name(name, wanted))
            .map(|(_, id)| id.clone())
            .ok_or_else(|| {
                PortError::new(
                    FailureClass::PermanentInput,
                    format!(
                        "GitHub project {} has no option {wanted:?} in its {:?} field (options: {})",
                        board,
                        fields.status_field,
                        self.options.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            })
    }
}
