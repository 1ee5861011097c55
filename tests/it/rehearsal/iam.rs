//! IAM, measured: every AWS call the rehearsal recorded is allowed for the role that made it
//! by the rendered statements, and every action a rendered role grants is either exercised
//! by some recorded call or listed in [`NOT_EXERCISED`] with the documented path that
//! needs it; and the scheduler role's rights to start the producer, checked with the
//! evaluator ([`check_scheduler`]).
//!
//! Invariant: a call is judged as IAM authorises it — `TransactWriteItems` per item as
//! `PutItem`/`UpdateItem`/`DeleteItem`/`ConditionCheckItem`, batch calls per request, a
//! Secrets Manager call on the secret id the caller named — and a failure prints the whole
//! role → actions table, so the fix (in infra-pulumi's `ROLE_ACTIONS`) can be read off it.

use super::provision::SETUP_ROLE;
use super::render::Rendered;
use kiro_tests::aws::RecordedCall;
use kiro_tests::aws::iam::{self, IamCall, Request, Statement, evaluate};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Granted actions the rehearsal cannot exercise, each with the documented path that needs
/// it. Anything granted, unexercised and not listed here fails the rehearsal.
pub const NOT_EXERCISED: &[(&str, &str, &str)] = &[
    // ECS pulls the image and ships the container logs with the execution role; the
    // rehearsal runs the binaries directly and keeps their output in files.
    ("*-execution", "ecr:GetAuthorizationToken", "ECS image pull"),
    (
        "*-execution",
        "ecr:BatchCheckLayerAvailability",
        "ECS image pull",
    ),
    (
        "*-execution",
        "ecr:GetDownloadUrlForLayer",
        "ECS image pull",
    ),
    ("*-execution", "ecr:BatchGetImage", "ECS image pull"),
    (
        "*-execution",
        "logs:CreateLogStream",
        "the awslogs log driver",
    ),
    ("*-execution", "logs:PutLogEvents", "the awslogs log driver"),
    // CodeBuild uploads the JUnit reports with the service role; the quick start's
    // repositories write no JUnit file.
    (
        "codebuild",
        "codebuild:CreateReport",
        "the buildspec's junit report group",
    ),
    (
        "codebuild",
        "codebuild:UpdateReport",
        "the buildspec's junit report group",
    ),
    (
        "codebuild",
        "codebuild:BatchPutTestCases",
        "the buildspec's junit report group",
    ),
    // The ADOT collector sidecar exports the consumer's traces to X-Ray; the rehearsal's
    // OTLP receiver stands in for the sidecar.
    ("consumer-task", "xray:PutTraceSegments", "the ADOT sidecar"),
    (
        "consumer-task",
        "xray:PutTelemetryRecords",
        "the ADOT sidecar",
    ),
    ("consumer-task", "xray:GetSamplingRules", "the ADOT sidecar"),
    (
        "consumer-task",
        "xray:GetSamplingTargets",
        "the ADOT sidecar",
    ),
    (
        "consumer-task",
        "xray:GetSamplingStatisticSummaries",
        "the ADOT sidecar",
    ),
    // The sidecar's awsemf exporter writes the consumer's OTLP metrics to CloudWatch Logs
    // with the task role.
    (
        "consumer-task",
        "logs:CreateLogStream",
        "the ADOT sidecar's metrics export",
    ),
    (
        "consumer-task",
        "logs:PutLogEvents",
        "the ADOT sidecar's metrics export",
    ),
    // EventBridge Scheduler dead-letters an invocation it could not deliver.
    (
        "scheduler",
        "sqs:SendMessage",
        "the schedule's dead-letter queue (a failed RunTask)",
    ),
    // `kiro-consumer run --until-idle` reads the queues' depth (docs/iam.md); the task runs
    // `run`, which never idles out, so the rehearsal cannot reach it.
    (
        "consumer-task",
        "sqs:GetQueueAttributes",
        "kiro-consumer run --until-idle (queue depth)",
    ),
    // The recovery after a crash between "intent recorded" and "build id recorded": the
    // next consumer finds the build by its key. Only the crash rehearsal reaches it
    // (rehearsal_of_a_consumer_crash_inside_start_build_and_the_build_limit), where a
    // missing grant fails as a refused call.
    (
        "consumer-task",
        "codebuild:ListBuildsForProject",
        "re-attach after a crash inside StartBuild",
    ),
    // A rare error path: the consumer stops a build whose fence it lost.
    (
        "consumer-task",
        "codebuild:StopBuild",
        "stopping a build after the lease was lost",
    ),
];

fn listed(role: &str, action: &str) -> bool {
    NOT_EXERCISED.iter().any(|(r, a, _)| {
        *a == action
            && (*r == role
                || r.strip_prefix('*')
                    .is_some_and(|suffix| role.ends_with(suffix)))
    })
}

/// The rendered statements of every role, in the evaluator's shape.
pub fn statements(r: &Rendered) -> BTreeMap<String, Vec<Statement>> {
    r.roles
        .iter()
        .map(|(k, role)| {
            let v: Vec<Value> = role
                .statements
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "sid": s.sid, "effect": s.effect, "actions": s.actions,
                        "resources": s.resources, "condition": s.condition,
                    })
                })
                .collect();
            let parsed: Vec<Statement> = serde_json::from_value(Value::Array(v))
                .unwrap_or_else(|e| panic!("role {k}: statements the evaluator cannot read: {e}"));
            (k.clone(), parsed)
        })
        .collect()
}

/// The IAM requests a recorded call stands for (the emulator's mapping: transactions per
/// item, SQS batches as their single action, a secret named by ARN on that ARN).
pub fn requests(call: &RecordedCall, r: &Rendered) -> Vec<IamCall> {
    iam::iam_calls(call, &r.region, &r.account)
}

/// One refused call.
#[derive(Debug)]
pub struct Refusal {
    pub role: String,
    pub action: String,
    pub resource: String,
    pub status: Option<u16>,
}

/// The measurement over every call not made by [`SETUP_ROLE`].
#[derive(Debug, Default)]
pub struct Measured {
    /// role → actions it was seen to perform.
    pub used: BTreeMap<String, BTreeSet<String>>,
    pub refused: Vec<Refusal>,
    /// Calls the emulator could not attribute (unknown key or action).
    pub unattributed: Vec<String>,
    /// role → granted actions neither used nor listed.
    pub unused: BTreeMap<String, Vec<String>>,
}

/// Judge `calls` (plus `extra`: actions checked outside the recording, such as the
/// scheduler's) against the render.
pub fn measure(r: &Rendered, calls: &[RecordedCall], extra: &[(String, String)]) -> Measured {
    let stmts = statements(r);
    let mut m = Measured::default();
    for c in calls {
        if c.role.as_deref() == Some(SETUP_ROLE) {
            continue;
        }
        let Some(role) = c.role.clone() else {
            m.unattributed.push(format!(
                "#{} {:?} by key {:?}",
                c.seq, c.target, c.access_key_id
            ));
            continue;
        };
        let reqs = requests(c, r);
        if reqs.is_empty() {
            m.unattributed
                .push(format!("#{} {role}: {:?} {:?}", c.seq, c.service, c.action));
        }
        for req in reqs {
            m.used
                .entry(role.clone())
                .or_default()
                .insert(req.action.clone());
            let granted = stmts.get(&role).map(Vec::as_slice).unwrap_or_default();
            if let Err((resource, _)) = iam::check_call(granted, &req, &BTreeMap::new()) {
                m.refused.push(Refusal {
                    role: role.clone(),
                    action: req.action.clone(),
                    resource,
                    status: c.status,
                });
            }
        }
    }
    for (role, action) in extra {
        m.used
            .entry(role.clone())
            .or_default()
            .insert(action.clone());
    }
    for (role, s) in &stmts {
        let used = m.used.get(role).cloned().unwrap_or_default();
        let unused: Vec<String> = s
            .iter()
            .flat_map(|st| st.actions.iter())
            .filter(|a| !used.contains(*a) && !listed(role, a))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unused.is_empty() {
            m.unused.insert(role.clone(), unused);
        }
    }
    m
}

impl Measured {
    /// The role → actions table: granted actions marked used, listed (not exercised, with
    /// the reason) or UNUSED, and used actions that no statement grants marked REFUSED.
    pub fn table(&self, r: &Rendered) -> String {
        let mut out = String::from("role → actions (rendered grants vs the rehearsal's calls)\n");
        for (role, s) in statements(r) {
            out.push_str(&format!("  {role}\n"));
            let granted: BTreeSet<&String> = s.iter().flat_map(|st| st.actions.iter()).collect();
            let used = self.used.get(&role).cloned().unwrap_or_default();
            for a in &granted {
                let mark = if used.contains(*a) {
                    "used".to_owned()
                } else if let Some((_, _, why)) = NOT_EXERCISED
                    .iter()
                    .find(|(_, x, _)| x == a)
                    .filter(|_| listed(&role, a))
                {
                    format!("not exercised: {why}")
                } else {
                    "UNUSED (granted, never called, not listed)".to_owned()
                };
                out.push_str(&format!("    {a:<42} {mark}\n"));
            }
            for a in used.iter().filter(|a| !granted.contains(a)) {
                out.push_str(&format!("    {a:<42} REFUSED (called, not granted)\n"));
            }
        }
        for f in &self.refused {
            out.push_str(&format!(
                "  refused: {} {} on {} (answered {:?})\n",
                f.role, f.action, f.resource, f.status
            ));
        }
        out
    }

    pub fn assert_clean(&self, r: &Rendered) {
        assert!(
            self.refused.is_empty() && self.unused.is_empty() && self.unattributed.is_empty(),
            "IAM, measured: {} call(s) the rendered policies do not allow, unused grants {:?}, \
             unattributed calls {:?}\n{}",
            self.refused.len(),
            self.unused,
            self.unattributed,
            self.table(r)
        );
    }
}

/// Check with the evaluator that the scheduler role may start the producer task as the
/// schedule does: `ecs:RunTask` on the task definition, `ecs:TagResource` on the task
/// (the schedule propagates the task definition's tags), and `iam:PassRole` on both of
/// the task's roles to ECS. Returns the (role, action) pairs checked.
pub fn check_scheduler(r: &Rendered) -> Vec<(String, String)> {
    let stmts = statements(r);
    let role = super::provision::role_key(r, &r.schedule.target.role_arn);
    let granted = stmts.get(&role).cloned().unwrap_or_default();
    let task_def = r.schedule.target.ecs["taskDefinitionArn"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "the schedule's ECS target has no taskDefinitionArn: {}",
                r.schedule.target.ecs
            )
        });
    let cluster = r.schedule.target.arn.rsplit('/').next().unwrap_or_default();
    let task = format!(
        "arn:aws:ecs:{}:{}:task/{cluster}/0123456789abcdef",
        r.region, r.account
    );
    let mut checks = vec![(
        Request::new("ecs:RunTask", &task_def),
        "start the producer task",
    )];
    if r.schedule.target.ecs["propagateTags"].as_str() == Some("TASK_DEFINITION")
        || r.schedule.target.ecs["tags"].is_object()
    {
        checks.push((
            Request::new("ecs:TagResource", &task).with("ecs:CreateAction", "RunTask"),
            "tag the task it starts (propagateTags = TASK_DEFINITION)",
        ));
    }
    for arn in [
        &r.tasks.producer.task_role_arn,
        &r.tasks.producer.execution_role_arn,
    ] {
        checks.push((
            Request::new("iam:PassRole", arn)
                .with("iam:PassedToService", "ecs-tasks.amazonaws.com"),
            "hand the producer task its role",
        ));
    }
    let mut out = Vec::new();
    for (req, why) in checks {
        let d = evaluate(&granted, &req);
        assert!(
            d.allowed,
            "the schedule cannot {why}: the scheduler role ({role}) is not allowed {} on {} \
             (conditions not evaluated: {:?}); its statements: {:#?}",
            req.action,
            req.resource,
            d.unevaluated,
            r.role(&role).statements
        );
        out.push((role.clone(), req.action.clone()));
    }
    out
}
