//! A small IAM policy evaluator for the rehearsal: does a role's rendered policy allow a
//! call the emulator recorded? And the mapping from a recorded call to its IAM action
//! and resource ARNs.
//!
//! Statements come in the rendered stack's shape
//! `{ "sid", "effect": "Allow"|"Deny", "actions": [..], "resources": [..], "condition": {..}|null }`.
//! Evaluation as IAM does it for one identity policy set: an explicit Deny that matches
//! wins; otherwise an Allow that matches allows; otherwise implicit deny. Actions match
//! case-insensitively with `*` and `?` wildcards; resources match case-sensitively with
//! the same wildcards. Conditions: `StringEquals`, `StringLike`, `StringNotEquals`,
//! `StringNotLike` on keys present in the request context (e.g. `iam:PassedToService`);
//! any other operator, or a key the context lacks, makes the statement NOT match and is
//! reported in [`Decision::unevaluated`] so a test can fail loudly instead of guessing.
//!
//! Invariant: the evaluator never allows what no Allow statement matched.

use super::record::RecordedCall;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One policy statement (the rendered stack's shape).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Statement {
    #[serde(default)]
    pub sid: Option<String>,
    pub effect: Effect,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub condition: Option<Value>,
}

/// One request to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `service:Action`.
    pub action: String,
    /// The resource ARN (`*` for actions without a resource).
    pub resource: String,
    /// Condition keys known for this request (`iam:PassedToService` → `ecs-tasks.amazonaws.com`).
    pub context: BTreeMap<String, String>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Request {
        Request {
            action: action.to_owned(),
            resource: resource.to_owned(),
            context: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Request {
        self.context.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub allowed: bool,
    /// Sids (or `#index`) of the Allow statements that matched.
    pub allowed_by: Vec<String>,
    /// Sids (or `#index`) of the Deny statements that matched.
    pub denied_by: Vec<String>,
    /// Conditions that could not be evaluated (`#index Operator key`): those statements
    /// were treated as not matching.
    pub unevaluated: Vec<String>,
}

/// `pattern` (with `*` and `?`) matches `value`.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn values_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

/// Whether the statement's condition holds; unevaluable parts are pushed to `notes`.
fn condition_holds(cond: &Value, req: &Request, label: &str, notes: &mut Vec<String>) -> bool {
    let Some(ops) = cond.as_object() else {
        return cond.is_null();
    };
    let mut holds = true;
    for (op, block) in ops {
        let Some(block) = block.as_object() else {
            notes.push(format!("{label} {op}: not a mapping"));
            holds = false;
            continue;
        };
        for (key, expected) in block {
            let expected = values_of(expected);
            let Some(actual) = req.context.get(key) else {
                notes.push(format!(
                    "{label} {op} {key}: key not in the request context"
                ));
                holds = false;
                continue;
            };
            let ok = match op.as_str() {
                "StringEquals" => expected.iter().any(|e| e == actual),
                "StringNotEquals" => expected.iter().all(|e| e != actual),
                "StringLike" => expected.iter().any(|e| wildcard_match(e, actual)),
                "StringNotLike" => expected.iter().all(|e| !wildcard_match(e, actual)),
                _ => {
                    notes.push(format!("{label} {op} {key}: operator not supported"));
                    false
                }
            };
            holds &= ok;
        }
    }
    holds
}

/// Decide `req` against `statements`.
pub fn evaluate(statements: &[Statement], req: &Request) -> Decision {
    let mut d = Decision::default();
    let action = req.action.to_ascii_lowercase();
    for (i, s) in statements.iter().enumerate() {
        let label = s.sid.clone().unwrap_or_else(|| format!("#{i}"));
        let action_ok = s
            .actions
            .iter()
            .any(|a| wildcard_match(&a.to_ascii_lowercase(), &action));
        let resource_ok = s.resources.iter().any(|r| wildcard_match(r, &req.resource));
        if !(action_ok && resource_ok) {
            continue;
        }
        let cond_ok = match &s.condition {
            None => true,
            Some(c) => condition_holds(c, req, &label, &mut d.unevaluated),
        };
        if !cond_ok {
            continue;
        }
        match s.effect {
            Effect::Allow => d.allowed_by.push(label),
            Effect::Deny => d.denied_by.push(label),
        }
    }
    d.allowed = d.denied_by.is_empty() && !d.allowed_by.is_empty();
    d
}

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

/// The IAM action and resource ARNs of `call`; `None` when its service or action is
/// unknown. A Secrets Manager call uses the ARN the answer carried (the full ARN with
/// its random suffix), as IAM evaluates against that.
pub fn iam_call(call: &RecordedCall, default_region: &str, account: &str) -> Option<IamCall> {
    let action = call.iam_action()?;
    let service = call.service.as_deref()?;
    let region = call.region.as_deref().unwrap_or(default_region);
    let mut resources: Vec<String> = call
        .resources
        .iter()
        .map(|r| match (&call.response_arn, service) {
            (Some(arn), "secretsmanager") => arn.clone(),
            _ => resource_arn(service, r, region, account),
        })
        .collect();
    if resources.is_empty() {
        resources.push("*".into());
    }
    Some(IamCall { action, resources })
}

/// Check every resource of `call` against `statements`: `Ok` when all are allowed, else
/// the first refused `(resource, decision)`.
pub fn check_call(
    statements: &[Statement],
    call: &IamCall,
    context: &BTreeMap<String, String>,
) -> Result<(), (String, Decision)> {
    for r in &call.resources {
        let req = Request {
            action: call.action.clone(),
            resource: r.clone(),
            context: context.clone(),
        };
        let d = evaluate(statements, &req);
        if !d.allowed {
            return Err((r.clone(), d));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stmts(v: Value) -> Vec<Statement> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("sqs:*", "sqs:SendMessage"));
        assert!(wildcard_match(
            "arn:aws:sqs:*:*:kiro-*.fifo",
            "arn:aws:sqs:us-east-1:1:kiro-q.fifo"
        ));
        assert!(wildcard_match("dynamodb:?etItem", "dynamodb:GetItem"));
        assert!(!wildcard_match("dynamodb:?etItem", "dynamodb:PutItems"));
        assert!(!wildcard_match(
            "arn:aws:sqs:*:*:kiro-*.fifo",
            "arn:aws:sqs:us-east-1:1:other.fifo"
        ));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn allow_deny_and_implicit_deny() {
        let s = stmts(json!([
            {"sid": "Queue", "effect": "Allow", "actions": ["sqs:SendMessage", "sqs:Receive*"],
             "resources": ["arn:aws:sqs:us-east-1:1:jobs.fifo"], "condition": null},
            {"sid": "NoDlq", "effect": "Deny", "actions": ["sqs:*"],
             "resources": ["arn:aws:sqs:*:*:*-dlq.fifo"]},
            {"effect": "Allow", "actions": ["sqs:*"], "resources": ["arn:aws:sqs:*:*:*-dlq.fifo"]}
        ]));
        let ok = evaluate(
            &s,
            &Request::new("sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:1:jobs.fifo"),
        );
        assert!(ok.allowed);
        assert_eq!(ok.allowed_by, ["Queue"]);
        // Case-insensitive actions.
        assert!(
            evaluate(
                &s,
                &Request::new("SQS:sendmessage", "arn:aws:sqs:us-east-1:1:jobs.fifo")
            )
            .allowed
        );
        let denied = evaluate(
            &s,
            &Request::new("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:jobs-dlq.fifo"),
        );
        assert!(!denied.allowed);
        assert_eq!(denied.denied_by, ["NoDlq"]);
        assert_eq!(denied.allowed_by, ["#2"]);
        let implicit = evaluate(
            &s,
            &Request::new("sqs:DeleteQueue", "arn:aws:sqs:us-east-1:1:jobs.fifo"),
        );
        assert!(!implicit.allowed);
        assert!(implicit.allowed_by.is_empty() && implicit.denied_by.is_empty());
    }

    #[test]
    fn conditions_on_known_keys_and_reported_unknowns() {
        let s = stmts(json!([
            {"sid": "Pass", "effect": "Allow", "actions": ["iam:PassRole"], "resources": ["*"],
             "condition": {"StringEquals": {"iam:PassedToService": ["ecs-tasks.amazonaws.com"]}}},
            {"sid": "Tagged", "effect": "Allow", "actions": ["ecs:TagResource"], "resources": ["*"],
             "condition": {"StringEquals": {"ecs:CreateAction": "RunTask"}}},
            {"sid": "Ip", "effect": "Allow", "actions": ["s3:GetObject"], "resources": ["*"],
             "condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
        ]));
        let pass = Request::new("iam:PassRole", "arn:aws:iam::1:role/x");
        let yes = evaluate(
            &s,
            &pass
                .clone()
                .with("iam:PassedToService", "ecs-tasks.amazonaws.com"),
        );
        assert!(yes.allowed);
        let no = evaluate(
            &s,
            &pass
                .clone()
                .with("iam:PassedToService", "lambda.amazonaws.com"),
        );
        assert!(!no.allowed);
        assert!(no.unevaluated.is_empty());
        let unknown = evaluate(&s, &pass);
        assert!(!unknown.allowed);
        assert_eq!(unknown.unevaluated.len(), 1, "{:?}", unknown.unevaluated);
        let like = stmts(
            json!([{"effect": "Allow", "actions": ["iam:PassRole"], "resources": ["*"],
            "condition": {"StringLike": {"iam:PassedToService": "ecs-*.amazonaws.com"}}}]),
        );
        assert!(
            evaluate(
                &like,
                &Request::new("iam:PassRole", "r")
                    .with("iam:PassedToService", "ecs-tasks.amazonaws.com")
            )
            .allowed
        );
        let ip = evaluate(
            &s,
            &Request::new("s3:GetObject", "x").with("aws:SourceIp", "10.1.1.1"),
        );
        assert!(!ip.allowed);
        assert!(
            ip.unevaluated[0].contains("IpAddress"),
            "{:?}",
            ip.unevaluated
        );
    }

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
            answered_by: super::super::Answerer::Moto,
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
}
