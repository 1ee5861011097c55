//! From a recorded call to the IAM requests it stands for: the action(s) and the ARNs
//! of the resources, as IAM authorises them.
//!
//! Invariant: a call IAM authorises per item is split per item — DynamoDB
//! `TransactWriteItems`/`TransactGetItems` become one `PutItem`/`UpdateItem`/
//! `DeleteItem`/`ConditionCheckItem`/`GetItem` request per item on its table (there is
//! no `dynamodb:Transact*` IAM action), and SQS `*Batch` actions are authorised as their
//! single forms (`sqs:SendMessage`, …).

use crate::aws::record::RecordedCall;
use serde_json::Value;

/// A recorded call as IAM sees it: its action and the ARNs of the resources it names
/// (`*` when it names none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamCall {
    pub action: String,
    pub resources: Vec<String>,
}

/// The ARN of one resource a call of `service` names.
pub fn resource_arn(service: &str, resource: &str, region: &str, account: &str) -> String {
    if resource.starts_with("arn:") {
        return resource.to_owned();
    }
    match service {
        "sqs" => {
            // http://host/<account>/<name>, or a bare name.
            let path: Vec<&str> = resource
                .split("://")
                .nth(1)
                .map_or(resource, |rest| rest.split_once('/').map_or("", |(_, p)| p))
                .split('/')
                .filter(|s| !s.is_empty())
                .collect();
            let (acct, name) = match path.as_slice() {
                [acct, name] => (*acct, *name),
                [name] => (account, *name),
                _ => (account, resource),
            };
            format!("arn:aws:sqs:{region}:{acct}:{name}")
        }
        "dynamodb" => format!("arn:aws:dynamodb:{region}:{account}:table/{resource}"),
        "codebuild" => format!("arn:aws:codebuild:{region}:{account}:project/{resource}"),
        "secretsmanager" => format!("arn:aws:secretsmanager:{region}:{account}:secret:{resource}"),
        "ssm" => format!(
            "arn:aws:ssm:{region}:{account}:parameter/{}",
            resource.trim_start_matches('/')
        ),
        "ecs" => format!("arn:aws:ecs:{region}:{account}:cluster/{resource}"),
        // `group` or `group:log-stream:stream` (see RecordedCall::resources).
        "logs" => format!("arn:aws:logs:{region}:{account}:log-group:{resource}"),
        other => format!("arn:aws:{other}:{region}:{account}:{resource}"),
    }
}

/// The IAM action and resource ARNs of `call` as recorded (one action); `None` when its
/// service or action is unknown. A Secrets Manager call naming its secret by ARN is
/// evaluated on that ARN; one naming it by name on the ARN the answer carried (the full
/// ARN with its random suffix), else on `secret:<name>`.
pub fn iam_call(call: &RecordedCall, default_region: &str, account: &str) -> Option<IamCall> {
    let action = call.iam_action()?;
    let service = call.service.as_deref()?;
    let region = call.region.as_deref().unwrap_or(default_region);
    let mut resources: Vec<String> = call
        .resources
        .iter()
        .map(|r| match (&call.response_arn, service) {
            (Some(arn), "secretsmanager") if !r.starts_with("arn:") => arn.clone(),
            _ => resource_arn(service, r, region, account),
        })
        .collect();
    if resources.is_empty() {
        resources.push("*".into());
    }
    Some(IamCall { action, resources })
}

/// Every IAM request `call` stands for (see the module doc); empty when its service or
/// action is unknown.
pub fn iam_calls(call: &RecordedCall, default_region: &str, account: &str) -> Vec<IamCall> {
    let Some(base) = iam_call(call, default_region, account) else {
        return Vec::new();
    };
    let region = call.region.as_deref().unwrap_or(default_region);
    let body = call.request.as_ref().unwrap_or(&Value::Null);
    match base.action.as_str() {
        "dynamodb:TransactWriteItems" | "dynamodb:TransactGetItems" => body
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let (kind, inner) = item.as_object()?.iter().next()?;
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    _ => return None,
                };
                let table = inner.get("TableName")?.as_str()?;
                Some(IamCall {
                    action: format!("dynamodb:{action}"),
                    resources: vec![resource_arn("dynamodb", table, region, account)],
                })
            })
            .collect(),
        "sqs:SendMessageBatch" | "sqs:DeleteMessageBatch" | "sqs:ChangeMessageVisibilityBatch" => {
            vec![IamCall {
                action: base.action.trim_end_matches("Batch").to_owned(),
                resources: base.resources,
            }]
        }
        _ => vec![base],
    }
}

#[cfg(test)]
mod tests {
    use super::super::{check_call, tests::stmts};
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn recorded_calls_map_to_arns() {
        let r = "us-east-1";
        assert_eq!(
            resource_arn(
                "sqs",
                "http://127.0.0.1:5000/123456789012/jobs.fifo",
                r,
                "999"
            ),
            "arn:aws:sqs:us-east-1:123456789012:jobs.fifo"
        );
        assert_eq!(
            resource_arn("sqs", "jobs.fifo", r, "999"),
            "arn:aws:sqs:us-east-1:999:jobs.fifo"
        );
        assert_eq!(
            resource_arn("dynamodb", "leases", r, "1"),
            "arn:aws:dynamodb:us-east-1:1:table/leases"
        );
        assert_eq!(
            resource_arn("codebuild", "kiro", r, "1"),
            "arn:aws:codebuild:us-east-1:1:project/kiro"
        );
        assert_eq!(
            resource_arn("ssm", "/kiro/p", r, "1"),
            "arn:aws:ssm:us-east-1:1:parameter/kiro/p"
        );
        assert_eq!(
            resource_arn("logs", "/aws/codebuild/p:log-stream:u", r, "1"),
            "arn:aws:logs:us-east-1:1:log-group:/aws/codebuild/p:log-stream:u"
        );
        let arn = "arn:aws:secretsmanager:us-east-1:1:secret:kiro/gh-AbCdEf";
        assert_eq!(resource_arn("secretsmanager", arn, r, "1"), arn);

        let call = RecordedCall {
            seq: 0,
            access_key_id: Some("K".into()),
            role: Some("codebuild".into()),
            service: Some("secretsmanager".into()),
            region: Some("eu-west-1".into()),
            action: Some("GetSecretValue".into()),
            target: None,
            resources: vec!["kiro/gh".into()],
            response_arn: Some(arn.into()),
            status: Some(200),
            answered_by: crate::aws::Answerer::Moto,
            request: None,
        };
        let c = iam_call(&call, r, "1").unwrap();
        assert_eq!(c.action, "secretsmanager:GetSecretValue");
        assert_eq!(c.resources, [arn]);
        let policy = stmts(
            json!([{"effect": "Allow", "actions": ["secretsmanager:GetSecretValue"],
            "resources": ["arn:aws:secretsmanager:us-east-1:1:secret:kiro/gh-*"]}]),
        );
        assert!(check_call(&policy, &c, &BTreeMap::new()).is_ok());
        let other = stmts(
            json!([{"effect": "Allow", "actions": ["secretsmanager:GetSecretValue"],
            "resources": ["arn:aws:secretsmanager:us-east-1:1:secret:other-*"]}]),
        );
        let (res, d) = check_call(&other, &c, &BTreeMap::new()).unwrap_err();
        assert_eq!(res, arn);
        assert!(!d.allowed);
        let mut no_res = call.clone();
        no_res.service = Some("xray".into());
        no_res.action = Some("PutTraceSegments".into());
        no_res.resources.clear();
        assert_eq!(iam_call(&no_res, r, "1").unwrap().resources, ["*"]);
    }

    #[test]
    fn a_secret_named_by_arn_is_evaluated_on_that_arn() {
        let named = "arn:aws:secretsmanager:us-east-1:1:secret:kiro/gh-Rendered";
        let call = RecordedCall {
            seq: 0,
            access_key_id: None,
            role: None,
            service: Some("secretsmanager".into()),
            region: None,
            action: Some("GetSecretValue".into()),
            target: None,
            resources: vec![named.into()],
            response_arn: Some("arn:aws:secretsmanager:us-east-1:1:secret:kiro/gh-MotoXy".into()),
            status: Some(200),
            answered_by: crate::aws::Answerer::Moto,
            request: None,
        };
        assert_eq!(
            iam_call(&call, "us-east-1", "1").unwrap().resources,
            [named]
        );
    }

    #[test]
    fn transactions_and_batches_split_into_the_actions_iam_checks() {
        let call = |service: &str, action: &str, request: Value| RecordedCall {
            seq: 0,
            access_key_id: None,
            role: None,
            service: Some(service.into()),
            region: Some("us-east-1".into()),
            action: Some(action.into()),
            target: None,
            resources: crate::aws::record::resources_of(Some(service), Some(action), &request),
            response_arn: None,
            status: Some(200),
            answered_by: crate::aws::Answerer::Moto,
            request: Some(request),
        };
        let tx = call(
            "dynamodb",
            "TransactWriteItems",
            json!({"TransactItems": [{"Update": {"TableName": "leases"}},
                {"ConditionCheck": {"TableName": "jobs"}}, {"Put": {"TableName": "leases"}}]}),
        );
        let got: Vec<(String, String)> = iam_calls(&tx, "us-east-1", "1")
            .into_iter()
            .map(|c| (c.action, c.resources[0].clone()))
            .collect();
        let t = |n: &str| format!("arn:aws:dynamodb:us-east-1:1:table/{n}");
        assert_eq!(
            got,
            [
                ("dynamodb:UpdateItem".to_owned(), t("leases")),
                ("dynamodb:ConditionCheckItem".to_owned(), t("jobs")),
                ("dynamodb:PutItem".to_owned(), t("leases")),
            ]
        );
        let batch = call(
            "sqs",
            "DeleteMessageBatch",
            json!({"QueueUrl": "http://h/1/q.fifo", "Entries": []}),
        );
        let got = iam_calls(&batch, "us-east-1", "1");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].action, "sqs:DeleteMessage");
        assert_eq!(got[0].resources, ["arn:aws:sqs:us-east-1:1:q.fifo"]);
        let plain = call(
            "sqs",
            "SendMessage",
            json!({"QueueUrl": "http://h/1/q.fifo"}),
        );
        assert_eq!(
            iam_calls(&plain, "us-east-1", "1")[0].action,
            "sqs:SendMessage"
        );
    }
}
