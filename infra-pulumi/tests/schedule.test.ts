// The scheduled producer: what EventBridge Scheduler needs to start it (RunTask, PassRole, the
// tags it propagates), where a failed invocation goes, and the alarms when the schedule cannot
// start the producer or the producer fails (the seed's "poller errors" alarm).
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { METRICS_NAMESPACE } from "../src/alarms";
import { deploy, ofType, one } from "./harness";
import type { Run } from "./harness";

let run: Run;
before(async () => {
  run = await deploy();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const schedulerStatements = (): Any[] => JSON.parse(one(run, "aws:iam/rolePolicy:RolePolicy", "scheduler-policy").inputs.policy).Statement;
const byAction = (action: string): Any => {
  const found = schedulerStatements().filter((s) => s.Action.includes(action));
  assert.equal(found.length, 1, action);
  return found[0];
};
const alarm = (name: string) => one(run, "aws:cloudwatch/metricAlarm:MetricAlarm", `${name}-alarm`).inputs;
const topic = () => one(run, "aws:sns/topic:Topic", "alarms").state?.arn;

describe("scheduler role", () => {
  test("may tag the producer's tasks (propagateTags = TASK_DEFINITION on a tagged task definition), only at RunTask", () => {
    const s = one(run, "aws:scheduler/schedule:Schedule", "producer-schedule").inputs;
    assert.equal(s.target.ecsParameters.propagateTags, "TASK_DEFINITION");
    assert.ok(Object.keys(one(run, "aws:ecs/taskDefinition:TaskDefinition", "producer-task").inputs.tags ?? {}).length > 0);
    const tag = byAction("ecs:TagResource");
    assert.deepEqual(tag.Action, ["ecs:TagResource"]);
    assert.deepEqual(tag.Resource, ["arn:aws:ecs:eu-west-1:123456789012:task/kiro-test/*"]);
    assert.deepEqual(tag.Condition, { StringEquals: { "ecs:CreateAction": "RunTask" } });
  });

  test("passes the producer's roles to ECS tasks only (iam:PassedToService)", () => {
    const pass = byAction("iam:PassRole");
    assert.deepEqual(pass.Condition, { StringEquals: { "iam:PassedToService": "ecs-tasks.amazonaws.com" } });
  });

  test("may send a failed invocation to the schedule's dead-letter queue, and nothing else to SQS", () => {
    const dlq = one(run, "aws:sqs/queue:Queue", "schedule-dlq");
    const send = byAction("sqs:SendMessage");
    assert.deepEqual(send.Resource, [dlq.state?.arn]);
  });
});

describe("schedule dead-letter queue", () => {
  test("a standard (Scheduler does not deliver to FIFO), encrypted queue keeping 14 days, the target's deadLetterConfig", () => {
    const dlq = one(run, "aws:sqs/queue:Queue", "schedule-dlq");
    assert.equal(dlq.inputs.name, "kiro-test-schedule-dlq");
    assert.notEqual(dlq.inputs.fifoQueue, true);
    assert.equal(dlq.inputs.sqsManagedSseEnabled, true);
    assert.equal(dlq.inputs.messageRetentionSeconds, 14 * 24 * 3600);
    const s = one(run, "aws:scheduler/schedule:Schedule", "producer-schedule").inputs;
    assert.deepEqual(s.target.deadLetterConfig, { arn: dlq.state?.arn });
  });

  test("the schedule lives in the stack's own schedule group (its metrics are per group)", () => {
    const group = one(run, "aws:scheduler/scheduleGroup:ScheduleGroup", "producer-schedule-group").inputs;
    assert.equal(group.name, "kiro-test");
    assert.equal(one(run, "aws:scheduler/schedule:Schedule", "producer-schedule").inputs.groupName, "kiro-test");
  });
});

describe("alarm: the schedule cannot start the producer", () => {
  test("target errors, dropped invocations or anything in the schedule DLQ", () => {
    const a = alarm("producer-schedule-failed");
    assert.deepEqual(a.alarmActions, [topic()]);
    assert.equal(a.threshold, 0);
    assert.equal(a.comparisonOperator, "GreaterThanThreshold");
    const metrics = a.metricQueries.filter((q: Any) => q.metric).map((q: Any) => [q.metric.namespace, q.metric.metricName, q.metric.dimensions]);
    assert.deepEqual(metrics, [
      ["AWS/Scheduler", "TargetErrorCount", { ScheduleGroup: "kiro-test" }],
      ["AWS/Scheduler", "InvocationDroppedCount", { ScheduleGroup: "kiro-test" }],
      ["AWS/SQS", "ApproximateNumberOfMessagesVisible", { QueueName: "kiro-test-schedule-dlq" }],
    ]);
    const [result] = a.metricQueries.filter((q: Any) => q.returnData);
    assert.equal(result.expression, "FILL(errors, 0) + FILL(dropped, 0) + FILL(dead, 0)");
  });
});

describe("alarm: the producer task fails", () => {
  test("an EventBridge rule catches the producer task stopping with a non-zero exit code or failing to start", () => {
    const rule = one(run, "aws:cloudwatch/eventRule:EventRule", "producer-failed").inputs;
    const pattern = JSON.parse(rule.eventPattern);
    assert.deepEqual(pattern.source, ["aws.ecs"]);
    assert.deepEqual(pattern["detail-type"], ["ECS Task State Change"]);
    assert.deepEqual(pattern.detail.clusterArn, [one(run, "aws:ecs/cluster:Cluster", "cluster").state?.arn]);
    assert.deepEqual(pattern.detail.group, ["family:kiro-test-producer"]);
    assert.deepEqual(pattern.detail.lastStatus, ["STOPPED"]);
    assert.deepEqual(pattern.detail.$or, [
      { containers: { name: ["producer"], exitCode: [{ "anything-but": 0 }] } },
      { stopCode: ["TaskFailedToStart"] },
    ]);
  });

  test("the rule's events land in a log group (kept for the stopped reason) whose metric filter feeds the alarm", () => {
    const group = one(run, "aws:cloudwatch/logGroup:LogGroup", "producer-failures-logs");
    assert.equal(group.inputs.name, "/aws/events/kiro-test/producer-failures");
    const target = one(run, "aws:cloudwatch/eventTarget:EventTarget", "producer-failed-to-logs").inputs;
    assert.equal(target.rule, "kiro-test-producer-failed");
    assert.equal(target.arn, group.state?.arn);
    const policy = JSON.parse(one(run, "aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "producer-failures-delivery").inputs.policyDocument);
    assert.deepEqual(policy.Statement[0].Principal, { Service: ["events.amazonaws.com", "delivery.logs.amazonaws.com"] });
    assert.deepEqual(policy.Statement[0].Action, ["logs:CreateLogStream", "logs:PutLogEvents"]);
    assert.deepEqual(policy.Statement[0].Resource, [`${group.state?.arn}:*`]);
    const filter = one(run, "aws:cloudwatch/logMetricFilter:LogMetricFilter", "producer-failures").inputs;
    assert.equal(filter.logGroupName, "/aws/events/kiro-test/producer-failures");
    assert.equal(filter.pattern, "");
    assert.deepEqual([filter.metricTransformation.namespace, filter.metricTransformation.name], [METRICS_NAMESPACE, "ProducerFailures"]);
    const a = alarm("producer-failed");
    assert.deepEqual([a.namespace, a.metricName, a.threshold, a.comparisonOperator], [METRICS_NAMESPACE, "ProducerFailures", 1, "GreaterThanOrEqualToThreshold"]);
    assert.deepEqual(a.alarmActions, [topic()]);
  });

  test("every log group, the new ones included, has a retention", () => {
    for (const g of ofType(run, "aws:cloudwatch/logGroup:LogGroup")) assert.equal(g.inputs.retentionInDays, 30, g.inputs.name);
  });
});
