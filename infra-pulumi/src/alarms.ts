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

type AlarmSpec = Omit<aws.cloudwatch.MetricAlarmArgs, "name" | "alarmActions" | "okActions">;

/** A function that creates `<prefix>-<name>` alarms notifying `topic` on alarm and on OK. */
export function alarmsOn(topic: aws.sns.Topic, prefix: string, tags: Record<string, string>) {
  return (name: string, args: AlarmSpec) =>
    new aws.cloudwatch.MetricAlarm(`${name}-alarm`, {
      name: `${prefix}-${name}`,
      alarmActions: [topic.arn],
      okActions: [topic.arn],
      tags,
      ...args,
    });
}

/** One metric of a metric-math alarm (5-minute period, not itself returned). */
export function metricQuery(id: string, namespace: string, metricName: string, stat: string, dimensions?: Record<string, pulumi.Input<string>>) {
  return { id, returnData: false, metric: { namespace, metricName, stat, period: 300, dimensions } };
}

/** A single-metric alarm: above (or at) `threshold` in one period, missing data is fine. */
export function singleMetric(
  description: string,
  comparisonOperator: string,
  threshold: number,
  metric: { namespace: string; metricName: pulumi.Input<string>; statistic: string; period: number; dimensions?: Record<string, pulumi.Input<string>>; unit?: string },
): AlarmSpec {
  return { alarmDescription: description, comparisonOperator, threshold, evaluationPeriods: 1, treatMissingData: "notBreaching", ...metric };
}

/** Metric math over `queries` whose `expression` (labelled `label`, id `id`) is above 0 in one period. */
export function anyAbove(description: string, queries: ReturnType<typeof metricQuery>[], id: string, label: string, expression: string): AlarmSpec {
  return {
    alarmDescription: description,
    comparisonOperator: "GreaterThanThreshold",
    threshold: 0,
    evaluationPeriods: 1,
    treatMissingData: "notBreaching",
    metricQueries: [...queries, { id, label, expression, returnData: true }],
  };
}

/** A percentage of finished builds (`numerator` of `BuildsFinished`) above `threshold`, in 2 of 3 periods. */
function buildRate(description: string, label: string, threshold: number, id: string, numerator: string): AlarmSpec {
  const emf = (qid: string, name: string) => metricQuery(qid, METRICS_NAMESPACE, name, "Sum");
  return {
    alarmDescription: description,
    comparisonOperator: "GreaterThanThreshold",
    threshold,
    evaluationPeriods: 3,
    datapointsToAlarm: 2,
    treatMissingData: "notBreaching",
    metricQueries: [
      emf(id, numerator),
      emf("finished", EMF_METRICS.buildsFinished),
      { id: "rate", label, expression: `IF(finished > 0, 100 * ${id} / finished, 0)`, returnData: true },
    ],
  };
}

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
  const alarm = alarmsOn(alarmTopic, prefix, tags);

  alarm("build-failure-rate", buildRate("More than 50% of the builds that finished failed", "build failure rate (%)", 50, "failed", EMF_METRICS.buildsFailed));
  alarm(
    "build-duration",
    singleMetric("Builds take longer than 45 minutes on average", "GreaterThanThreshold", 45 * 60 * 1000, {
      namespace: METRICS_NAMESPACE,
      metricName: EMF_METRICS.buildDuration,
      statistic: "Average",
      period: 900,
      unit: "Milliseconds",
    }),
  );
  alarm("test-failure-rate", buildRate("More than 15% of the builds that finished failed their tests", "test failure rate (%)", 15, "tests", EMF_METRICS.testsFailed));
  alarm(
    "dlq-not-empty",
    singleMetric("Dead letters are waiting (kiro-consumer dlq list)", "GreaterThanThreshold", 0, {
      namespace: "AWS/SQS",
      metricName: "ApproximateNumberOfMessagesVisible",
      dimensions: { QueueName: dlq.name },
      statistic: "Maximum",
      period: 300,
    }),
  );
  alarm(
    "oldest-message-age",
    singleMetric("A work item has waited in the queue for more than 2 hours", "GreaterThanThreshold", 2 * 3600, {
      namespace: "AWS/SQS",
      metricName: "ApproximateAgeOfOldestMessage",
      dimensions: { QueueName: queue.name },
      statistic: "Maximum",
      period: 300,
    }),
  );
  alarm(
    "table-throttling",
    anyAbove(
      "DynamoDB throttled reads or writes on the job-record table",
      [
        metricQuery("reads", "AWS/DynamoDB", "ReadThrottleEvents", "Sum", { TableName: table.name }),
        metricQuery("writes", "AWS/DynamoDB", "WriteThrottleEvents", "Sum", { TableName: table.name }),
      ],
      "throttled",
      "throttle events",
      "reads + writes",
    ),
  );
  alarm(
    "consumer-errors",
    singleMetric("The consumer logged 5 or more errors in 5 minutes", "GreaterThanOrEqualToThreshold", 5, {
      namespace: METRICS_NAMESPACE,
      metricName: EMF_METRICS.consumerErrors,
      statistic: "Sum",
      period: 300,
    }),
  );
  return alarmTopic;
}
