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
//! The mapping from recorded calls to IAM requests is [`map`].
//!
//! Invariant: the evaluator never allows what no Allow statement matched.

mod map;

pub use map::{IamCall, iam_call, iam_calls, resource_arn};
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
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn stmts(v: Value) -> Vec<Statement> {
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
}
