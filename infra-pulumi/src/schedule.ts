// The scheduled producer: EventBridge Scheduler runs `kiro-producer --once` as a Fargate task;
// a failed invocation goes to the schedule's dead-letter queue; alarms fire when the schedule
// cannot start the producer or the producer task fails (the seed's "poller errors" alarm).
//
// Invariant: every way a producer run can be lost is seen by an alarm on the one topic: the
// Scheduler's target errors and dropped invocations, the schedule DLQ's depth, and an ECS task
// state change of the producer that stopped with a non-zero exit code or failed to start.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";
import { METRICS_NAMESPACE, alarmsOn, anyAbove, metricQuery, singleMetric } from "./alarms";
import { PRODUCER_CONTAINER } from "./names";
import { grant, stmt } from "./iam";
import type { Roles } from "./iam";

/** The metric the producer-failure events are counted in (a metric filter on their log group). */
export const PRODUCER_FAILURES_METRIC = "ProducerFailures";

export interface ScheduleArgs {
  prefix: string;
  cfg: StackConfig;
  tags: Record<string, string>;
  cluster: aws.ecs.Cluster;
  /** `arn:aws:ecs:<region>:<account>:task/<cluster>/*` */
  clusterTasksArn: pulumi.Input<string>;
  producerTaskDefinition: aws.ecs.TaskDefinition;
  network: aws.types.input.scheduler.ScheduleTargetEcsParametersNetworkConfiguration;
  roles: Roles;
  alarmTopic: aws.sns.Topic;
}

export interface ScheduledProducer {
  schedule: aws.scheduler.Schedule;
  scheduleDlq: aws.sqs.Queue;
}

export function createSchedule(args: ScheduleArgs): ScheduledProducer {
  const { prefix, cfg, tags, cluster, producerTaskDefinition, roles, alarmTopic } = args;
  const group = new aws.scheduler.ScheduleGroup("producer-schedule-group", { name: prefix, tags });
  // EventBridge Scheduler delivers dead letters to standard queues only.
  const scheduleDlq = new aws.sqs.Queue("schedule-dlq", {
    name: `${prefix}-schedule-dlq`,
    messageRetentionSeconds: 14 * 24 * 3600,
    sqsManagedSseEnabled: true,
    tags,
  });
  const schedule = new aws.scheduler.Schedule("producer-schedule", {
    name: `${prefix}-producer`,
    groupName: group.name,
    description: "kiro-producer --once: enqueue the board's ready items",
    scheduleExpression: cfg.producerSchedule,
    flexibleTimeWindow: { mode: "OFF" },
    state: "ENABLED",
    target: {
      arn: cluster.arn,
      roleArn: roles.scheduler.arn,
      // The next tick is minutes away: no retries, a failed invocation is a dead letter.
      retryPolicy: { maximumRetryAttempts: 0 },
      deadLetterConfig: { arn: scheduleDlq.arn },
      ecsParameters: {
        taskDefinitionArn: producerTaskDefinition.arn,
        launchType: "FARGATE",
        taskCount: 1,
        networkConfiguration: args.network,
        propagateTags: "TASK_DEFINITION",
      },
    },
  });
  grant(roles, "scheduler", [
    stmt("RunProducer", ["ecs:RunTask"], [producerTaskDefinition.arnWithoutRevision.apply((arn) => `${arn}:*`)]),
    // RunTask with propagateTags tags the new task: authorised as ecs:TagResource on it.
    stmt("TagProducerTask", ["ecs:TagResource"], [args.clusterTasksArn], { StringEquals: { "ecs:CreateAction": "RunTask" } }),
    stmt("PassProducerRoles", ["iam:PassRole"], [roles["producer-task"].arn, roles["producer-execution"].arn], {
      StringEquals: { "iam:PassedToService": "ecs-tasks.amazonaws.com" },
    }),
    stmt("DeadLetter", ["sqs:SendMessage"], [scheduleDlq.arn]),
  ]);

  const alarm = alarmsOn(alarmTopic, prefix, tags);
  alarm(
    "producer-schedule-failed",
    anyAbove(
      "EventBridge Scheduler could not start the producer task (target errors, dropped invocations, schedule DLQ not empty)",
      [
        metricQuery("errors", "AWS/Scheduler", "TargetErrorCount", "Sum", { ScheduleGroup: group.name }),
        metricQuery("dropped", "AWS/Scheduler", "InvocationDroppedCount", "Sum", { ScheduleGroup: group.name }),
        metricQuery("dead", "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", { QueueName: scheduleDlq.name }),
      ],
      "failed",
      "failed producer invocations",
      "FILL(errors, 0) + FILL(dropped, 0) + FILL(dead, 0)",
    ),
  );

  // The producer task itself failing: exit code != 0 (a bad configuration exits 2 before any
  // log line is JSON, a board or queue error exits 1) or the task never started (image, secrets).
  const failures = new aws.cloudwatch.LogGroup("producer-failures-logs", {
    name: `/aws/events/${prefix}/producer-failures`,
    retentionInDays: cfg.logRetentionDays,
    tags,
  });
  new aws.cloudwatch.LogResourcePolicy("producer-failures-delivery", {
    policyName: `${prefix}-producer-failures`,
    policyDocument: pulumi.jsonStringify({
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "EventBridgeDelivers",
          Effect: "Allow",
          Principal: { Service: ["events.amazonaws.com", "delivery.logs.amazonaws.com"] },
          Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
          Resource: [pulumi.interpolate`${failures.arn}:*`],
        },
      ],
    }),
  });
  const rule = new aws.cloudwatch.EventRule("producer-failed", {
    name: `${prefix}-producer-failed`,
    description: "The producer task stopped with a non-zero exit code or failed to start",
    eventPattern: pulumi.jsonStringify({
      source: ["aws.ecs"],
      "detail-type": ["ECS Task State Change"],
      detail: {
        clusterArn: [cluster.arn],
        group: [`family:${prefix}-producer`],
        lastStatus: ["STOPPED"],
        $or: [{ containers: { name: [PRODUCER_CONTAINER], exitCode: [{ "anything-but": 0 }] } }, { stopCode: ["TaskFailedToStart"] }],
      },
    }),
    tags,
  });
  new aws.cloudwatch.EventTarget("producer-failed-to-logs", { rule: rule.name, arn: failures.arn });
  new aws.cloudwatch.LogMetricFilter("producer-failures", {
    name: `${prefix}-producer-failures`,
    logGroupName: failures.name,
    pattern: "",
    metricTransformation: { name: PRODUCER_FAILURES_METRIC, namespace: METRICS_NAMESPACE, value: "1", defaultValue: "0" },
  });
  alarm(
    "producer-failed",
    singleMetric("The producer task failed (see /aws/events/<stack>/producer-failures for the stopped reason)", "GreaterThanOrEqualToThreshold", 1, {
      namespace: METRICS_NAMESPACE,
      metricName: PRODUCER_FAILURES_METRIC,
      statistic: "Sum",
      period: 300,
    }),
  );
  return { schedule, scheduleDlq };
}
