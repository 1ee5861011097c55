//! What an operator creates before the first `pulumi up`, and what `pulumi up` creates,
//! made on the emulator from the render: the queues (with their attributes and redrive
//! policy), the job-record table, the log groups, the secrets, the CodeBuild project (with
//! its log group), and the stand-in
//! credentials of every rendered role.
//!
//! Invariant: every resource is created from the rendered values, through the emulator
//! under the role [`SETUP_ROLE`] (recorded, and left out of the IAM measurement); a
//! refused set-up call fails the rehearsal with the service's answer.

use super::render::Rendered;
use kiro_tests::aws::{AwsEmulator, EnvVar, EnvVarType, ProjectSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The role set-up calls are recorded under (an operator, not a deployed component).
pub const SETUP_ROLE: &str = "rehearsal-setup";

/// The secret values the rehearsal stores.
#[derive(Debug, Clone)]
pub struct SecretValues {
    pub github_token: String,
    pub kiro_api_key: String,
    /// A real RSA private key (PEM), generated for this run.
    pub app_key: String,
}

/// Generate an RSA private key (PEM, PKCS#8) with the host's `openssl`.
pub fn generate_app_key(dir: &std::path::Path) -> String {
    let path = dir.join("app-key.pem");
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("openssl must be on PATH to generate the GitHub App key");
    assert!(
        out.status.success(),
        "openssl genpkey: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(path).unwrap()
}

async fn call(emu: &AwsEmulator, service: &str, target: &str, body: Value) -> Value {
    let (status, answer) = emu
        .call(SETUP_ROLE, service, target, body.clone())
        .await
        .unwrap_or_else(|e| panic!("set-up call {target}: {e}"));
    assert!(
        (200..300).contains(&status),
        "set-up call {target} {body} answered {status}: {answer}"
    );
    answer
}

/// The name moto keeps a secret under so that the rendered ARN finds it: moto resolves a
/// full ARN it did not issue by its last `:` segment.
pub fn moto_secret_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// Create the queues, the table and the secrets the render names.
pub async fn resources(emu: &AwsEmulator, r: &Rendered, secrets: &SecretValues) {
    // The DLQs first: the work queue's redrive policy names the DLQ's ARN.
    let mut queues = vec![&r.dlq];
    queues.extend(r.schedule_dlq.as_ref());
    queues.push(&r.queue);
    for q in queues {
        let answer = call(
            emu,
            "sqs",
            "AmazonSQS.CreateQueue",
            json!({ "QueueName": q.name, "Attributes": q.attributes }),
        )
        .await;
        let url = answer["QueueUrl"].as_str().unwrap_or_default();
        assert!(
            url.ends_with(&format!("/{}", q.name)),
            "queue {} created at {url}",
            q.name
        );
    }
    let t = &r.table;
    let mut keys = vec![json!({ "AttributeName": t.hash_key, "KeyType": "HASH" })];
    if let Some(range) = &t.range_key {
        keys.push(json!({ "AttributeName": range, "KeyType": "RANGE" }));
    }
    let attributes: Vec<Value> = t
        .attributes
        .iter()
        .map(|a| json!({ "AttributeName": a.name, "AttributeType": a.kind }))
        .collect();
    call(
        emu,
        "dynamodb",
        "DynamoDB_20120810.CreateTable",
        json!({
            "TableName": t.name, "KeySchema": keys, "AttributeDefinitions": attributes,
            "BillingMode": t.billing_mode,
        }),
    )
    .await;
    if let Some(ttl) = &t.ttl_attribute {
        call(
            emu,
            "dynamodb",
            "DynamoDB_20120810.UpdateTimeToLive",
            json!({ "TableName": t.name, "TimeToLiveSpecification": { "Enabled": true, "AttributeName": ttl } }),
        )
        .await;
    }
    for g in &r.log_groups {
        call(
            emu,
            "logs",
            "Logs_20140328.CreateLogGroup",
            json!({ "logGroupName": g.name }),
        )
        .await;
    }
    let mut stored = vec![
        (&r.secrets.github_token, &secrets.github_token),
        (&r.secrets.kiro_api_key, &secrets.kiro_api_key),
    ];
    if let Some(app) = &r.secrets.github_app_key {
        stored.push((app, &secrets.app_key));
    }
    for (arn, value) in stored {
        call(
            emu,
            "secretsmanager",
            "secretsmanager.CreateSecret",
            json!({ "Name": moto_secret_name(arn), "SecretString": value }),
        )
        .await;
    }
}

/// The role key of a role ARN in the render (`…:role/kiro-staging-codebuild` → `codebuild`).
pub fn role_key(r: &Rendered, arn: &str) -> String {
    r.role_by_arn(arn).0.to_owned()
}

/// Register the rendered CodeBuild project; `rewrite` maps rendered values to local ones
/// (the collector endpoint the stack configures for builds → the test's receiver).
pub fn project(emu: &AwsEmulator, r: &Rendered, rewrite: &BTreeMap<String, String>) {
    let p = &r.codebuild;
    let mut spec = ProjectSpec::new(&p.name, &role_key(r, &p.service_role_arn), &p.buildspec)
        .timeout_minutes(p.build_timeout)
        .concurrent_build_limit(p.concurrent_build_limit);
    spec.queued_timeout_in_minutes = p.queued_timeout;
    spec.image = p.image.clone();
    if let Some(group) = &p.log_group {
        spec = spec.log_group(group);
    }
    for v in &p.environment_variables {
        let kind = EnvVarType::parse(&v.kind)
            .unwrap_or_else(|| panic!("project variable {} has unknown type {}", v.name, v.kind));
        let value = rewrite.get(&v.value).unwrap_or(&v.value);
        spec = spec.env(EnvVar::new(&v.name, value, kind));
    }
    emu.create_project(spec);
}

/// Stand-in credentials for every rendered role: calls signed with them are recorded
/// under the role's key.
pub fn credentials(emu: &AwsEmulator, r: &Rendered) {
    for key in r.roles.keys() {
        let tag: String = key
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect();
        emu.add_credentials(
            &format!("ASIAREHEARSAL{tag}"),
            &format!("rehearsal-secret-{key}"),
            key,
        );
    }
}

/// `GetSecretValue` of `arn` as `role` (how ECS resolves a task's `secrets` with the
/// execution role); panics naming the container variable when it fails.
pub async fn resolve_secret(emu: &AwsEmulator, role: &str, name: &str, arn: &str) -> String {
    let (status, answer) = emu
        .call(
            role,
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            json!({ "SecretId": arn }),
        )
        .await
        .unwrap_or_else(|e| panic!("resolving {name} ({arn}) as {role}: {e}"));
    assert_eq!(
        status, 200,
        "ECS could not resolve the task secret {name} from {arn} with the execution role {role}: {answer}"
    );
    answer["SecretString"]
        .as_str()
        .unwrap_or_else(|| panic!("secret {arn} has no SecretString: {answer}"))
        .to_owned()
}
