//! What the emulator records about every AWS call it receives: who (access key → role),
//! which service and action, on which resources, and how it was answered.
//!
//! Invariant: recording never changes a request; parsing is best effort (a call the
//! emulator cannot parse is still recorded, with the fields it could not read empty).

use serde_json::Value;

/// Who answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// The emulator itself (CodeBuild, ECS task protection).
    Emulator,
    /// Forwarded to moto unchanged.
    Moto,
}

/// One AWS call as the emulator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// Order of arrival (0, 1, 2, …).
    pub seq: u64,
    /// The access key id of the SigV4 `Authorization` header (`Credential=AKID/…`).
    pub access_key_id: Option<String>,
    /// The role key registered for that access key ([`AwsEmulator::add_credentials`] or a
    /// credentials-endpoint key); `None` when the key is unknown.
    ///
    /// [`AwsEmulator::add_credentials`]: super::AwsEmulator::add_credentials
    pub role: Option<String>,
    /// The signing name of the credential scope: `sqs`, `dynamodb`, `codebuild`,
    /// `secretsmanager`, `ssm`, `ecs`, …
    pub service: Option<String>,
    /// The region of the credential scope.
    pub region: Option<String>,
    /// The action: `SendMessage`, `UpdateItem`, `StartBuild`, `GetSecretValue`, …
    /// (from `X-Amz-Target` after its last `.`, or the query `Action=` parameter).
    pub action: Option<String>,
    /// The raw `X-Amz-Target` header, when present.
    pub target: Option<String>,
    /// The resources named in the request: queue URLs (`QueueUrl`, or `QueueName` for
    /// `CreateQueue`/`GetQueueUrl`), table names (`TableName`, every table of a
    /// transaction or batch), CodeBuild project names (`projectName`, or the project part
    /// of build ids), secret ids (`SecretId`), parameter names (`Name`/`Names`), ECS task
    /// ARNs (`tasks`), log groups (`group`, or `group:log-stream:stream` when the call
    /// names a stream).
    pub resources: Vec<String>,
    /// The `ARN` field of the answer when there is one (Secrets Manager answers carry
    /// the full secret ARN, which a secret name alone does not give).
    pub response_arn: Option<String>,
    /// HTTP status of the answer the emulator sent (or injected); `None` while
    /// unanswered, or when the server abandoned the answer because the caller's
    /// connection closed first (a caller killed during a held `StartBuild` may show
    /// either: the build exists in both cases).
    pub status: Option<u16>,
    pub answered_by: Answerer,
    /// The JSON request body, when the request was JSON.
    pub request: Option<Value>,
}

impl RecordedCall {
    /// `service:Action` as IAM names it (`sqs:SendMessage`), when both are known.
    pub fn iam_action(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            iam_prefix(self.service.as_deref()?),
            self.action.as_deref()?
        ))
    }

    /// The first resource, if any.
    pub fn resource(&self) -> Option<&str> {
        self.resources.first().map(String::as_str)
    }

    /// Whether the call got a 2xx answer.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The IAM action prefix of a signing name (they differ only for a few services).
pub fn iam_prefix(signing_name: &str) -> &str {
    match signing_name {
        "monitoring" => "cloudwatch",
        "email" => "ses",
        other => other,
    }
}

/// `(access key id, region, service)` from a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sqs/aws4_request, …`.
pub fn parse_authorization(header: &str) -> Option<(String, String, String)> {
    let cred = header.split("Credential=").nth(1)?;
    let cred = cred.split([',', ' ']).next()?;
    let mut parts = cred.split('/');
    let akid = parts.next()?.to_owned();
    let _date = parts.next()?;
    let region = parts.next()?.to_owned();
    let service = parts.next()?.to_owned();
    Some((akid, region, service))
}

/// The action of a request: `X-Amz-Target` after its last `.`, else `Action=` in the
/// query string or a form-encoded body.
pub fn action_of(target: Option<&str>, query: Option<&str>, body: &[u8]) -> Option<String> {
    if let Some(t) = target {
        return t.rsplit('.').next().map(str::to_owned);
    }
    let from = |s: &str| {
        s.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "Action")
            .map(|(_, v)| v.to_owned())
    };
    query
        .and_then(from)
        .or_else(|| std::str::from_utf8(body).ok().and_then(from))
}

fn push_str(out: &mut Vec<String>, v: Option<&Value>) {
    if let Some(s) = v.and_then(Value::as_str)
        && !out.iter().any(|x| x == s)
    {
        out.push(s.to_owned());
    }
}

/// The resources a JSON request names (see [`RecordedCall::resources`]).
pub fn resources_of(service: Option<&str>, action: Option<&str>, body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match service.unwrap_or_default() {
        "sqs" => {
            push_str(&mut out, body.get("QueueUrl"));
            push_str(&mut out, body.get("QueueName"));
        }
        "dynamodb" => {
            push_str(&mut out, body.get("TableName"));
            for item in body
                .get("TransactItems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(op) = item.as_object() {
                    for inner in op.values() {
                        push_str(&mut out, inner.get("TableName"));
                    }
                }
            }
            if let Some(m) = body.get("RequestItems").and_then(Value::as_object) {
                for table in m.keys() {
                    if !out.contains(table) {
                        out.push(table.clone());
                    }
                }
            }
        }
        "codebuild" => {
            push_str(&mut out, body.get("projectName"));
            let ids = body
                .get("ids")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let one = body.get("id").cloned().into_iter();
            for id in ids.iter().chain(one.collect::<Vec<_>>().iter()) {
                if let Some(project) = id.as_str().and_then(project_of_build_id)
                    && !out.iter().any(|x| x == project)
                {
                    out.push(project.to_owned());
                }
            }
        }
        "secretsmanager" => push_str(&mut out, body.get("SecretId")),
        "logs" => {
            let group = body.get("logGroupName").and_then(Value::as_str);
            let stream = body.get("logStreamName").and_then(Value::as_str);
            match (group, stream) {
                (Some(g), Some(s)) => out.push(format!("{g}:log-stream:{s}")),
                (Some(g), None) => out.push(g.to_owned()),
                _ => {}
            }
        }
        "ssm" => {
            push_str(&mut out, body.get("Name"));
            for n in body
                .get("Names")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                push_str(&mut out, Some(n));
            }
        }
        "ecs" => {
            for t in body
                .get("tasks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                push_str(&mut out, Some(t));
            }
            if out.is_empty() && action.is_some() {
                push_str(&mut out, body.get("cluster"));
            }
        }
        _ => {}
    }
    out
}

/// The project of a build id `project:uuid` or build ARN `…:build/project:uuid`.
pub fn project_of_build_id(id: &str) -> Option<&str> {
    let id = id.rsplit_once(":build/").map_or(id, |(_, rest)| rest);
    id.rsplit_once(':')
        .map(|(p, _)| p)
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn authorization_gives_key_region_and_service() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDCONSUMER/20261202/eu-west-1/sqs/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc";
        let (k, r, s) = parse_authorization(h).unwrap();
        assert_eq!(
            (k.as_str(), r.as_str(), s.as_str()),
            ("AKIDCONSUMER", "eu-west-1", "sqs")
        );
        assert_eq!(parse_authorization("Bearer x"), None);
    }

    #[test]
    fn action_from_target_or_query_or_form_body() {
        assert_eq!(
            action_of(Some("AmazonSQS.SendMessage"), None, b"").as_deref(),
            Some("SendMessage")
        );
        assert_eq!(
            action_of(
                Some("AmazonEC2ContainerServiceV20141113.UpdateTaskProtection"),
                None,
                b""
            )
            .as_deref(),
            Some("UpdateTaskProtection")
        );
        assert_eq!(
            action_of(None, Some("Version=1&Action=GetCallerIdentity"), b"").as_deref(),
            Some("GetCallerIdentity")
        );
        assert_eq!(
            action_of(None, None, b"Action=ListQueues&Version=2012-11-05").as_deref(),
            Some("ListQueues")
        );
        assert_eq!(action_of(None, None, b"{}"), None);
    }

    #[test]
    fn resources_of_each_service() {
        let tx = json!({"TransactItems": [
            {"Update": {"TableName": "leases"}}, {"Put": {"TableName": "jobs"}},
            {"ConditionCheck": {"TableName": "leases"}}]});
        assert_eq!(
            resources_of(Some("dynamodb"), Some("TransactWriteItems"), &tx),
            ["leases", "jobs"]
        );
        let get =
            json!({"ids": ["p1:aaa", "arn:aws:codebuild:us-east-1:1:build/p2:bbb", "p1:ccc"]});
        assert_eq!(
            resources_of(Some("codebuild"), Some("BatchGetBuilds"), &get),
            ["p1", "p2"]
        );
        let send = json!({"QueueUrl": "http://h/123/q.fifo", "MessageBody": "x"});
        assert_eq!(
            resources_of(Some("sqs"), None, &send),
            ["http://h/123/q.fifo"]
        );
        let put =
            json!({"logGroupName": "/aws/codebuild/p", "logStreamName": "u-1", "logEvents": []});
        assert_eq!(
            resources_of(Some("logs"), Some("PutLogEvents"), &put),
            ["/aws/codebuild/p:log-stream:u-1"]
        );
        let secret = json!({"SecretId": "kiro/github-token"});
        assert_eq!(
            resources_of(Some("secretsmanager"), None, &secret),
            ["kiro/github-token"]
        );
        let prot = json!({"cluster": "c", "tasks": ["arn:aws:ecs:r:1:task/c/t"]});
        assert_eq!(
            resources_of(Some("ecs"), Some("UpdateTaskProtection"), &prot),
            ["arn:aws:ecs:r:1:task/c/t"]
        );
    }

    #[test]
    fn iam_action_joins_prefix_and_action() {
        let call = RecordedCall {
            seq: 0,
            access_key_id: None,
            role: None,
            service: Some("dynamodb".into()),
            region: None,
            action: Some("UpdateItem".into()),
            target: None,
            resources: vec![],
            response_arn: None,
            status: Some(200),
            answered_by: Answerer::Moto,
            request: None,
        };
        assert_eq!(call.iam_action().as_deref(), Some("dynamodb:UpdateItem"));
        assert!(call.succeeded());
    }
}
