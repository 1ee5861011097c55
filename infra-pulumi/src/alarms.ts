// Operator alarms: one SNS topic, the metric filters that feed it, and every alarm on it.
//
// Invariant: every operator alarm notifies the one topic (alarm and OK); the EMF metric names
// are the ones the binaries emit (telemetry/src/metrics.rs `names`).
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";

/** The consumer's CloudWatch Embedded Metric Format namespace (the alarms read it). */
export const METRICS_NAMESPACE = "KiroCodebuildWorker";

/** The EMF metrics the alarms rely on (dimension-less; the consumer emits them per finished job). */
export const EMF_METRICS = {
  /** Builds that finished, whatever their outcome. */
  buildsFinished: "BuildsFinished",
  /** Builds that finished with a failure outcome. */
  buildsFailed: "BuildsFailed",
  /** Builds whose outcome class was `tests-failed`. */
  testsFailed: "TestsFailed",
  /** Duration of each finished build, milliseconds. */
  buildDuration: "BuildDuration",
  /** Error log lines of the consumer (from a metric filter on its log group). */
  consumerErrors: "ConsumerErrors",
} as const;

export interface AlarmArgs {
  prefix: string;
  cfg: StackConfig;
  tags: Record<string, string>;
  queue: aws.sqs.Queue;
  dlq: aws.sqs.Queue;
  table: aws.dynamodb.Table;
  consumerLogs: aws.cloudwatch.LogGroup;
}

export function createAlarms({ prefix, cfg, tags, queue, dlq, table, consumerLogs }: AlarmArgs): aws.sns.Topic {
  const alarmTopic = new aws.sns.Topic("alarms", { name: `${prefix}-alarms`, tags });
  if (cfg.alarmEmail) {
    new aws.sns.TopicSubscription("alarms-email", { topic: alarmTopic.arn, protocol: "email", endpoint: cfg.alarmEmail });
  }
  new aws.cloudwatch.LogMetricFilter("consumer-errors", {
    name: `${prefix}-consumer-errors`,
    logGroupName: consumerLogs.name,
    pattern: '{ $.level = "ERROR" }',
    metricTransformation: {
      name: EMF_METRICS.consumerErrors,
      namespace: METRICS_NAMESPACE,
      value: "1",
      defaultValue: "0",
    },
  });
  const alarm = (name: string, args: Omit<aws.cloudwatch.MetricAlarmArgs, "name" | "alarmActions" | "okActions">) =>
    new aws.cloudwatch.MetricAlarm(`${name}-alarm`, {
      name: `${prefix}-${name}`,
      alarmActions: [alarmTopic.arn],
      okActions: [alarmTopic.arn],
      tags,
      ...args,
    });
  const metric = (id: string, namespace: string, metricName: string, stat: string, dimensions?: Record<string, pulumi.Input<string>>) => ({
    id,
    returnData: false,
    metric: { namespace, metricName, stat, period: 300, dimensions },
  });
  const emf = (id: string, name: string, stat = "Sum") => metric(id, METRICS_NAMESPACE, name, stat);

  alarm("build-failure-rate", {
    alarmDescription: "More than 50% of the builds that finished failed",
    comparisonOperator: "GreaterThanThreshold",
    threshold: 50,
    evaluationPeriods: 3,
    datapointsToAlarm: 2,
    treatMissingData: "notBreaching",
    metricQueries: [
      emf("failed", EMF_METRICS.buildsFailed),
      emf("finished", EMF_METRICS.buildsFinished),
      { id: "rate", label: "build failure rate (%)", expression: "IF(finished > 0, 100 * failed / finished, 0)", returnData: true },
    ],
  });
  alarm("build-duration", {
    alarmDescription: "Builds take longer than 45 minutes on average",
    comparisonOperator: "GreaterThanThreshold",
    threshold: 45 * 60 * 1000,
    evaluationPeriods: 1,
    treatMissingData: "notBreaching",
    namespace: METRICS_NAMESPACE,
    metricName: EMF_METRICS.buildDuration,
    statistic: "Average",
    period: 900,
    unit: "Milliseconds",
  });
  alarm("test-failure-rate", {
    alarmDescription: "More than 15% of the builds that finished failed their tests",
    comparisonOperator: "GreaterThanThreshold",
    threshold: 15,
    evaluationPeriods: 3,
    datapointsToAlarm: 2,
    treatMissingData: "notBreaching",
    metricQueries: [
      emf("tests", EMF_METRICS.testsFailed),
      emf("finished", EMF_METRICS.buildsFinished),
      { id: "rate", label: "test failure rate (%)", expression: "IF(finished > 0, 100 * tests / finished, 0)", returnData: true },
    ],
  });
  alarm("dlq-not-empty", {
    alarmDescription: "Dead letters are waiting (kiro-consumer dlq list)",
    comparisonOperator: "GreaterThanThreshold",
    threshold: 0,
    evaluationPeriods: 1,
    treatMissingData: "notBreaching",
    namespace: "AWS/SQS",
    metricName: "ApproximateNumberOfMessagesVisible",
    dimensions: { QueueName: dlq.name },
    statistic: "Maximum",
    period: 300,
  });
  alarm("oldest-message-age", {
    alarmDescription: "A work item has waited in the queue for more than 2 hours",
    comparisonOperator: "GreaterThanThreshold",
    threshold: 2 * 3600,
    evaluationPeriods: 1,
    treatMissingData: "notBreaching",
    namespace: "AWS/SQS",
    metricName: "ApproximateAgeOfOldestMessage",
    dimensions: { QueueName: queue.name },
    statistic: "Maximum",
    period: 300,
  });
  alarm("table-throttling", {
    alarmDescription: "DynamoDB throttled reads or writes on the job-record table",
    comparisonOperator: "GreaterThanThreshold",
    threshold: 0,
    evaluationPeriods: 1,
    treatMissingData: "notBreaching",
    metricQueries: [
      metric("reads", "AWS/DynamoDB", "ReadThrottleEvents", "Sum", { TableName: table.name }),
      metric("writes", "AWS/DynamoDB", "WriteThrottleEvents", "Sum", { TableName: table.name }),
      { id: "throttled", label: "throttle events", expression: "reads + writes", returnData: true },
    ],
  });
  alarm("consumer-errors", {
    alarmDescription: "The consumer logged 5 or more errors in 5 minutes",
    comparisonOperator: "GreaterThanOrEqualToThreshold",
    threshold: 5,
    evaluationPeriods: 1,
    treatMissingData: "notBreaching",
    namespace: METRICS_NAMESPACE,
    metricName: EMF_METRICS.consumerErrors,
    statistic: "Sum",
    period: 300,
  });
  return alarmTopic;
}
