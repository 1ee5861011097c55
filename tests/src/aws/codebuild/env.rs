//! Resolving a build's SECRETS_MANAGER and PARAMETER_STORE variables (typed project and
//! override variables, and the buildspec's `env.secrets-manager` / `env.parameter-store`)
//! from moto, through the emulator, signed as the project's service role.
//!
//! Invariant: a value that does not resolve is a [`ResolveError`] naming the variable and
//! the reference, never the value of any secret.

use super::EnvVarType;
use crate::aws::Shared;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A variable that could not be resolved; becomes the PROVISIONING phase's context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ResolveError {
    /// `Secrets Manager Error` or `Decrypted Variables Error` (CodeBuild's status codes).
    pub code: String,
    pub message: String,
}

/// A Secrets Manager reference `secret-id[:json-key[:version-stage[:version-id]]]`; the
/// secret id may be an ARN (which holds colons itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub secret_id: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

impl SecretRef {
    pub fn parse(reference: &str) -> SecretRef {
        let parts: Vec<&str> = reference.split(':').collect();
        // arn:aws:secretsmanager:region:account:secret:name → 7 parts form the id.
        let id_parts = if reference.starts_with("arn:") {
            7.min(parts.len())
        } else {
            1
        };
        let rest = &parts[id_parts..];
        let field = |i: usize| {
            rest.get(i)
                .filter(|s| !s.is_empty())
                .map(|s| (*s).to_owned())
        };
        SecretRef {
            secret_id: parts[..id_parts].join(":"),
            json_key: field(0),
            version_stage: field(1),
            version_id: field(2),
        }
    }
}

/// The buildspec's `env.secrets-manager` and `env.parameter-store` entries (name →
/// reference). A buildspec that is not valid YAML gives none (the executor's parser
/// reports it).
pub fn buildspec_references(text: &str) -> Vec<(String, String, EnvVarType)> {
    let Ok(doc) = serde_saphyr::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, kind) in [
        ("secrets-manager", EnvVarType::SecretsManager),
        ("parameter-store", EnvVarType::ParameterStore),
    ] {
        if let Some(m) = doc
            .get("env")
            .and_then(|e| e.get(key))
            .and_then(Value::as_object)
        {
            for (name, v) in m {
                if let Some(r) = v.as_str() {
                    out.push((name.clone(), r.to_owned(), kind));
                }
            }
        }
    }
    out
}

fn error_text(answer: &Value) -> String {
    let code = answer
        .get("__type")
        .and_then(Value::as_str)
        .unwrap_or("error");
    let code = code.rsplit('#').next().unwrap_or(code);
    let msg = answer
        .get("message")
        .or_else(|| answer.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{code}: {msg}")
}

/// Resolve one variable's value as `role`.
pub(crate) async fn resolve(
    shared: &Shared,
    role: &str,
    name: &str,
    reference: &str,
    kind: EnvVarType,
) -> Result<String, ResolveError> {
    match kind {
        EnvVarType::Plaintext => Ok(reference.to_owned()),
        EnvVarType::SecretsManager => secret(shared, role, name, reference).await,
        EnvVarType::ParameterStore => parameter(shared, role, name, reference).await,
    }
}

async fn secret(
    shared: &Shared,
    role: &str,
    name: &str,
    reference: &str,
) -> Result<String, ResolveError> {
    let err = |message: String| ResolveError {
        code: "Secrets Manager Error".into(),
        message,
    };
    let r = SecretRef::parse(reference);
    let mut body = json!({ "SecretId": r.secret_id });
    if let Some(s) = &r.version_stage {
        body["VersionStage"] = json!(s);
    }
    if let Some(v) = &r.version_id {
        body["VersionId"] = json!(v);
    }
    let (status, answer) = shared
        .call_as(
            role,
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            &body,
        )
        .await
        .map_err(|e| err(format!("variable {name} ({}): {e}", r.secret_id)))?;
    if status != 200 {
        return Err(err(format!(
            "variable {name} ({}): {}",
            r.secret_id,
            error_text(&answer)
        )));
    }
    let text = answer
        .get("SecretString")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            err(format!(
                "variable {name} ({}): the secret has no SecretString",
                r.secret_id
            ))
        })?;
    let Some(key) = &r.json_key else {
        return Ok(text.to_owned());
    };
    let doc: BTreeMap<String, Value> = serde_json::from_str(text).map_err(|_| {
        err(format!(
            "variable {name} ({}): json key {key} requested but the secret is not a JSON object",
            r.secret_id
        ))
    })?;
    match doc.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(err(format!(
            "variable {name} ({}): json key {key} not found in the secret",
            r.secret_id
        ))),
    }
}

async fn parameter(
    shared: &Shared,
    role: &str,
    name: &str,
    parameter: &str,
) -> Result<String, ResolveError> {
    let err = |message: String| ResolveError {
        code: "Decrypted Variables Error".into(),
        message,
    };
    let (status, answer) = shared
        .call_as(
            role,
            "ssm",
            "AmazonSSM.GetParameter",
            &json!({ "Name": parameter, "WithDecryption": true }),
        )
        .await
        .map_err(|e| err(format!("variable {name} ({parameter}): {e}")))?;
    if status != 200 {
        return Err(err(format!(
            "variable {name}: parameter does not exist or cannot be read: {parameter} ({})",
            error_text(&answer)
        )));
    }
    answer
        .pointer("/Parameter/Value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| err(format!("variable {name} ({parameter}): no Parameter.Value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_references_split_after_the_arn() {
        let r = SecretRef::parse(
            "arn:aws:secretsmanager:us-east-1:123:secret:kiro/app-AbCdEf:private_key:AWSCURRENT",
        );
        assert_eq!(
            r.secret_id,
            "arn:aws:secretsmanager:us-east-1:123:secret:kiro/app-AbCdEf"
        );
        assert_eq!(r.json_key.as_deref(), Some("private_key"));
        assert_eq!(r.version_stage.as_deref(), Some("AWSCURRENT"));
        assert_eq!(r.version_id, None);
        let plain = SecretRef::parse("kiro/github-token");
        assert_eq!(plain.secret_id, "kiro/github-token");
        assert_eq!(plain.json_key, None);
        let key_only = SecretRef::parse("creds::AWSPREVIOUS");
        assert_eq!(key_only.json_key, None);
        assert_eq!(key_only.version_stage.as_deref(), Some("AWSPREVIOUS"));
    }

    #[test]
    fn buildspec_secret_sections_are_read() {
        let text = "version: 0.2\nenv:\n  variables:\n    A: b\n  secrets-manager:\n    \
                    GITHUB_TOKEN: kiro/github-token\n  parameter-store:\n    P: /kiro/p\n";
        let refs = buildspec_references(text);
        assert!(refs.contains(&(
            "GITHUB_TOKEN".into(),
            "kiro/github-token".into(),
            EnvVarType::SecretsManager
        )));
        assert!(refs.contains(&("P".into(), "/kiro/p".into(), EnvVarType::ParameterStore)));
        assert_eq!(refs.len(), 2);
        assert!(buildspec_references(": : :").is_empty());
    }
}
