// The program under Pulumi mocks: the resources it declares and their key properties.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { EMF_METRICS, METRICS_NAMESPACE, TTL_ATTRIBUTE } from "../src/stack";
import { SECRETS, deploy, ofType, one, value } from "./harness";
import type { Run } from "./harness";

let run: Run;
before(async () => {
  run = await deploy();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const containers = (r: { inputs: Any }): Any[] => JSON.parse(r.inputs.containerDefinitions);
const alarm = (name: string) => one(run, "aws:cloudwatch/metricAlarm:MetricAlarm", `${name}-alarm`).inputs;

describe("queues", () => {
  test("work queue and dead-letter queue are both FIFO, encrypted, without content-based dedup", () => {
    for (const name of ["queue", "dlq"]) {
      const q = one(run, "aws:sqs/queue:Queue", name).inputs;
      assert.equal(q.fifoQueue, true, name);
      assert.equal(q.contentBasedDeduplication, false, name);
      assert.equal(q.sqsManagedSseEnabled, true, name);
      assert.match(q.name, /^kiro-test-.*\.fifo$/);
    }
    // Plus the schedule's (standard) dead-letter queue, see schedule.test.ts.
    assert.deepEqual(ofType(run, "aws:sqs/queue:Queue").map((q) => q.name).sort(), ["dlq", "queue", "schedule-dlq"]);
  });

  test("the work queue redrives to the DLQ as a high safety net; the DLQ keeps 14 days", () => {
    const q = one(run, "aws:sqs/queue:Queue", "queue");
    const dlq = one(run, "aws:sqs/queue:Queue", "dlq");
    const redrive = JSON.parse(q.inputs.redrivePolicy);
    assert.equal(redrive.deadLetterTargetArn, dlq.state?.arn);
    assert.equal(redrive.maxReceiveCount, 50);
    assert.equal(dlq.inputs.messageRetentionSeconds, 14 * 24 * 3600);
    assert.equal(q.inputs.visibilityTimeoutSeconds, 300);
    assert.equal(q.inputs.receiveWaitTimeSeconds, 20);
    const allow = JSON.parse(one(run, "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy", "dlq-redrive-allow").inputs.redriveAllowPolicy);
    assert.deepEqual(allow, { redrivePermission: "byQueue", sourceQueueArns: [q.state?.arn] });
  });
});

describe("job-record table", () => {
  test("on-demand, pk/sk strings, TTL, point-in-time recovery, encryption, deletion protection", () => {
    const t = one(run, "aws:dynamodb/table:Table", "jobs").inputs;
    assert.equal(t.billingMode, "PAY_PER_REQUEST");
    assert.equal(t.hashKey, "pk");
    assert.equal(t.rangeKey, "sk");
    assert.deepEqual(t.attributes, [
      { name: "pk", type: "S" },
      { name: "sk", type: "S" },
    ]);
    assert.deepEqual(t.ttl, { attributeName: TTL_ATTRIBUTE, enabled: true });
    assert.equal(TTL_ATTRIBUTE, "expires_ttl");
    assert.deepEqual(t.pointInTimeRecovery, { enabled: true });
    assert.deepEqual(t.serverSideEncryption, { enabled: true });
    assert.equal(t.deletionProtectionEnabled, true);
  });
});

describe("registry and cluster", () => {
  test("ECR repository is immutable, scanned on push and keeps 20 images", () => {
    const repo = one(run, "aws:ecr/repository:Repository", "consumer-image").inputs;
    assert.equal(repo.imageTagMutability, "IMMUTABLE");
    assert.deepEqual(repo.imageScanningConfiguration, { scanOnPush: true });
    const policy = JSON.parse(one(run, "aws:ecr/lifecyclePolicy:LifecyclePolicy", "consumer-image-lifecycle").inputs.policy);
    assert.equal(policy.rules[0].selection.countNumber, 20);
  });

  test("the cluster has Container Insights", () => {
    const c = one(run, "aws:ecs/cluster:Cluster", "cluster").inputs;
    assert.deepEqual(c.settings, [{ name: "containerInsights", value: "enabled" }]);
  });
});

describe("consumer task and service", () => {
  test("Fargate task: consumer with stop timeout 120, the image tag, secrets by reference, health check", async () => {
    const td = one(run, "aws:ecs/taskDefinition:TaskDefinition", "consumer-task");
    assert.deepEqual(td.inputs.requiresCompatibilities, ["FARGATE"]);
    assert.equal(td.inputs.networkMode, "awsvpc");
    assert.equal(td.inputs.taskRoleArn, one(run, "aws:iam/role:Role", "consumer-task-role").state?.arn);
    assert.equal(td.inputs.executionRoleArn, one(run, "aws:iam/role:Role", "consumer-execution-role").state?.arn);
    const [consumer] = containers(td);
    assert.equal(consumer.name, "consumer");
    assert.equal(consumer.stopTimeout, 120);
    assert.equal(consumer.image, `${await value(run.d.repository.repositoryUrl)}:0.1.0`);
    assert.deepEqual(consumer.entryPoint, ["/kiro-consumer"]);
    assert.deepEqual(consumer.command, ["run"]);
    assert.deepEqual(consumer.healthCheck.command, ["CMD", "/kiro-consumer", "health"]);
    assert.deepEqual(consumer.secrets, [
      { name: "GITHUB_TOKEN", valueFrom: SECRETS.github },
      { name: "KIRO_GITHUB_APP_PRIVATE_KEY", valueFrom: SECRETS.app },
    ]);
    const env = Object.fromEntries(consumer.environment.map((e: Any) => [e.name, e.value]));
    assert.equal(env.KIRO_BACKEND, "aws");
    assert.equal(env.KIRO_QUEUE_URL, await value(run.d.queue.url));
    assert.equal(env.KIRO_DLQ_URL, await value(run.d.dlq.url));
    assert.equal(env.KIRO_LEASE_TABLE, "kiro-test-jobs");
    assert.equal(env.KIRO_CODEBUILD_PROJECT, "kiro-test-worker");
    assert.equal(env.KIRO_MAX_ATTEMPTS, "4", "extra environment from the stack config");
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, "http://127.0.0.1:4318", "the sidecar, on the task's loopback");
    assert.equal(consumer.logConfiguration.options["awslogs-group"], "/kiro-test/consumer");
  });

  test("an ADOT collector sidecar (configured in collector.test.ts) starts before the consumer", () => {
    const [consumer, otel] = containers(one(run, "aws:ecs/taskDefinition:TaskDefinition", "consumer-task"));
    assert.equal(otel.name, "otel-collector");
    assert.match(otel.image, /^public\.ecr\.aws\/aws-observability\/aws-otel-collector:v\d+\.\d+\.\d+$/);
    assert.equal(otel.essential, false);
    assert.deepEqual(consumer.dependsOn, [{ containerName: "otel-collector", condition: "START" }]);
  });

  test("service on Fargate with desired count left to autoscaling", () => {
    const svc = one(run, "aws:ecs/service:Service", "consumer").inputs;
    assert.equal(svc.launchType, "FARGATE");
    assert.equal(svc.desiredCount, 0);
    assert.deepEqual(svc.networkConfiguration.subnets, ["subnet-0aaa", "subnet-0bbb"]);
    assert.equal(svc.networkConfiguration.assignPublicIp, false);
    assert.deepEqual(svc.deploymentCircuitBreaker, { enable: true, rollback: true });
  });

  test("autoscaling: 0..max tasks, target tracking on backlog per task with metric math", () => {
    const target = one(run, "aws:appautoscaling/target:Target", "consumer-scaling").inputs;
    assert.equal(target.minCapacity, 0);
    assert.equal(target.maxCapacity, 6);
    assert.equal(target.resourceId, "service/kiro-test/kiro-test-consumer");
    assert.equal(target.scalableDimension, "ecs:service:DesiredCount");
    const policy = one(run, "aws:appautoscaling/policy:Policy", "consumer-backlog-per-task").inputs;
    assert.equal(policy.policyType, "TargetTrackingScaling");
    const conf = policy.targetTrackingScalingPolicyConfiguration;
    assert.equal(conf.targetValue, 8);
    const [m1, m2, e1] = conf.customizedMetricSpecification.metrics;
    assert.deepEqual(m1.metricStat.metric, {
      namespace: "AWS/SQS",
      metricName: "ApproximateNumberOfMessagesVisible",
      dimensions: [{ name: "QueueName", value: "kiro-test-work.fifo" }],
    });
    assert.deepEqual(m2.metricStat.metric, {
      namespace: "ECS/ContainerInsights",
      metricName: "RunningTaskCount",
      dimensions: [
        { name: "ClusterName", value: "kiro-test" },
        { name: "ServiceName", value: "kiro-test-consumer" },
      ],
    });
    assert.deepEqual(e1, { id: "e1", label: "backlog per task", expression: "m1 / m2", returnData: true });
    assert.equal(m1.returnData, false);
    assert.equal(m2.returnData, false);
  });

  test("scale-out from zero: a step policy driven by an alarm on visible work with no tasks", () => {
    const step = one(run, "aws:appautoscaling/policy:Policy", "consumer-scale-from-zero");
    assert.equal(step.inputs.policyType, "StepScaling");
    assert.deepEqual(step.inputs.stepScalingPolicyConfiguration.stepAdjustments, [{ metricIntervalLowerBound: "0", scalingAdjustment: 1 }]);
    const a = one(run, "aws:cloudwatch/metricAlarm:MetricAlarm", "scale-from-zero-alarm").inputs;
    assert.deepEqual(a.alarmActions, [step.state?.arn]);
    assert.equal(a.threshold, 0);
    assert.equal(a.comparisonOperator, "GreaterThanThreshold");
    const expr = a.metricQueries.find((q: Any) => q.returnData).expression;
    assert.equal(expr, "IF(visible > 0 AND FILL(tasks, 0) == 0, 1, 0)");
  });
});

describe("producer", () => {
  test("a scheduled Fargate RunTask of kiro-producer --once every 5 minutes", () => {
    const s = one(run, "aws:scheduler/schedule:Schedule", "producer-schedule").inputs;
    assert.equal(s.scheduleExpression, "rate(5 minutes)");
    assert.deepEqual(s.flexibleTimeWindow, { mode: "OFF" });
    assert.equal(s.target.arn, one(run, "aws:ecs/cluster:Cluster", "cluster").state?.arn);
    assert.equal(s.target.roleArn, one(run, "aws:iam/role:Role", "scheduler-role").state?.arn);
    const td = one(run, "aws:ecs/taskDefinition:TaskDefinition", "producer-task");
    assert.equal(s.target.ecsParameters.taskDefinitionArn, td.state?.arn);
    assert.equal(s.target.ecsParameters.launchType, "FARGATE");
    const [producer] = containers(td);
    assert.deepEqual(producer.entryPoint, ["/kiro-producer"]);
    assert.deepEqual(producer.command, ["--once"]);
    assert.deepEqual(producer.secrets, [
      { name: "GITHUB_TOKEN", valueFrom: SECRETS.github },
      { name: "KIRO_GITHUB_APP_PRIVATE_KEY", valueFrom: SECRETS.app },
    ]);
  });

  test("the scheduler may run only the producer task and pass only its two roles", () => {
    const doc = JSON.parse(one(run, "aws:iam/rolePolicy:RolePolicy", "scheduler-policy").inputs.policy);
    const byAction = Object.fromEntries(doc.Statement.map((s: Any) => [s.Action.join(","), s.Resource]));
    assert.deepEqual(Object.keys(byAction).sort(), ["ecs:RunTask", "ecs:TagResource", "iam:PassRole", "sqs:SendMessage"]);
    assert.deepEqual(byAction["ecs:RunTask"], [`${one(run, "aws:ecs/taskDefinition:TaskDefinition", "producer-task").state?.arnWithoutRevision}:*`]);
    assert.deepEqual(byAction["iam:PassRole"], [
      one(run, "aws:iam/role:Role", "producer-task-role").state?.arn,
      one(run, "aws:iam/role:Role", "producer-execution-role").state?.arn,
    ]);
  });
});

describe("CodeBuild", () => {
  test("project: timeouts, concurrency, logs, the repository's buildspec with the stack's secret ARNs", () => {
    const p = one(run, "aws:codebuild/project:Project", "worker").inputs;
    assert.equal(p.name, "kiro-test-worker");
    assert.equal(p.buildTimeout, 60);
    assert.equal(p.queuedTimeout, 480);
    assert.equal(p.concurrentBuildLimit, 10);
    assert.equal(p.serviceRole, one(run, "aws:iam/role:Role", "codebuild-role").state?.arn);
    assert.equal(p.source.type, "NO_SOURCE");
    assert.match(p.source.buildspec, new RegExp(`GITHUB_TOKEN: ${SECRETS.github}$`, "m"));
    assert.match(p.source.buildspec, new RegExp(`KIRO_API_KEY: ${SECRETS.kiro}$`, "m"));
    assert.match(p.source.buildspec, /kiro-worker run/);
    assert.deepEqual(p.logsConfig.cloudwatchLogs, { status: "ENABLED", groupName: "/kiro-test/codebuild" });
    const env = Object.fromEntries(p.environment.environmentVariables.map((e: Any) => [e.name, e]));
    assert.equal(env.KIRO_WORKER_VERSION.value, "0.1.0");
    assert.equal(env.KIRO_CLI_VERSION.value, "2.8.0");
    assert.equal(env.KIRO_WORKER_SHA256.value, "a".repeat(64));
    for (const e of Object.values(env) as Any[]) {
      const expected = e.name === "KIRO_GITHUB_APP_PRIVATE_KEY" ? "SECRETS_MANAGER" : "PLAINTEXT";
      assert.equal(e.type, expected, `${e.name}: secrets are Secrets Manager references`);
    }
  });

  test("the JUnit report group the buildspec names exists", () => {
    const g = one(run, "aws:codebuild/reportGroup:ReportGroup", "junit-reports").inputs;
    assert.equal(g.name, "kiro-test-worker-junit");
    assert.equal(g.type, "TEST");
  });
});

describe("alarms", () => {
  test("every operator alarm notifies the one SNS topic", () => {
    const topic = one(run, "aws:sns/topic:Topic", "alarms").state?.arn;
    const alarms = ofType(run, "aws:cloudwatch/metricAlarm:MetricAlarm").filter((a) => a.name !== "scale-from-zero-alarm");
    assert.deepEqual(alarms.map((a) => a.name).sort(), [
      "build-duration-alarm",
      "build-failure-rate-alarm",
      "consumer-errors-alarm",
      "dlq-not-empty-alarm",
      "oldest-message-age-alarm",
      "producer-failed-alarm",
      "producer-schedule-failed-alarm",
      "table-throttling-alarm",
      "test-failure-rate-alarm",
    ]);
    for (const a of alarms) assert.deepEqual(a.inputs.alarmActions, [topic], a.name);
    const sub = one(run, "aws:sns/topicSubscription:TopicSubscription", "alarms-email").inputs;
    assert.deepEqual([sub.protocol, sub.endpoint], ["email", "ops@example.com"]);
  });

  test("build failure rate > 50% and test failure rate > 15%, metric math over the EMF namespace", () => {
    for (const [name, threshold, numerator] of [
      ["build-failure-rate", 50, EMF_METRICS.buildsFailed],
      ["test-failure-rate", 15, EMF_METRICS.testsFailed],
    ] as const) {
      const a = alarm(name);
      assert.equal(a.threshold, threshold, name);
      assert.equal(a.comparisonOperator, "GreaterThanThreshold");
      const metrics = a.metricQueries.filter((q: Any) => q.metric);
      assert.deepEqual(metrics.map((q: Any) => [q.metric.namespace, q.metric.metricName]), [
        [METRICS_NAMESPACE, numerator],
        [METRICS_NAMESPACE, EMF_METRICS.buildsFinished],
      ]);
      const [result] = a.metricQueries.filter((q: Any) => q.returnData);
      assert.match(result.expression, /^IF\(finished > 0, 100 \* \w+ \/ finished, 0\)$/);
    }
    assert.equal(METRICS_NAMESPACE, "KiroCodebuildWorker");
  });

  test("build duration > 45 minutes", () => {
    const a = alarm("build-duration");
    assert.equal(a.threshold, 45 * 60 * 1000);
    assert.equal(a.unit, "Milliseconds");
    assert.equal(a.metricName, EMF_METRICS.buildDuration);
    assert.equal(a.namespace, METRICS_NAMESPACE);
  });

  test("DLQ not empty, oldest message age > 2 h, DynamoDB throttling, consumer errors", () => {
    const dlq = alarm("dlq-not-empty");
    assert.deepEqual([dlq.metricName, dlq.dimensions, dlq.threshold], ["ApproximateNumberOfMessagesVisible", { QueueName: "kiro-test-dlq.fifo" }, 0]);
    const age = alarm("oldest-message-age");
    assert.deepEqual([age.metricName, age.dimensions, age.threshold], ["ApproximateAgeOfOldestMessage", { QueueName: "kiro-test-work.fifo" }, 7200]);
    const throttle = alarm("table-throttling");
    assert.deepEqual(
      throttle.metricQueries.filter((q: Any) => q.metric).map((q: Any) => [q.metric.metricName, q.metric.dimensions]),
      [
        ["ReadThrottleEvents", { TableName: "kiro-test-jobs" }],
        ["WriteThrottleEvents", { TableName: "kiro-test-jobs" }],
      ],
    );
    assert.equal(throttle.threshold, 0);
    const errors = alarm("consumer-errors");
    assert.deepEqual([errors.namespace, errors.metricName, errors.threshold], [METRICS_NAMESPACE, EMF_METRICS.consumerErrors, 5]);
    const filter = one(run, "aws:cloudwatch/logMetricFilter:LogMetricFilter", "consumer-errors").inputs;
    assert.equal(filter.logGroupName, "/kiro-test/consumer");
    assert.equal(filter.pattern, '{ $.level = "ERROR" }');
    assert.equal(filter.metricTransformation.name, EMF_METRICS.consumerErrors);
  });
});

describe("logs", () => {
  test("five log groups with the configured retention", () => {
    const groups = ofType(run, "aws:cloudwatch/logGroup:LogGroup").map((g) => [g.inputs.name, g.inputs.retentionInDays]);
    assert.deepEqual(groups.sort(), [
      ["/aws/events/kiro-test/producer-failures", 30],
      ["/kiro-test/codebuild", 30],
      ["/kiro-test/consumer", 30],
      ["/kiro-test/otel-metrics", 30],
      ["/kiro-test/producer", 30],
    ]);
  });
});
