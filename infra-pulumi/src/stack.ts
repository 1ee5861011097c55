// The whole deployment of one stack: queues, job-record table, registry, cluster, consumer
// service (scaling.ts), scheduled producer (schedule.ts), CodeBuild project, IAM (iam.ts) and
// alarms (alarms.ts); the binaries' environment comes from environment.ts and the collector
// sidecar's configuration from collector.ts.
//
// Invariant: plain `@pulumi/aws` resources only (no component resources, no awsx), so every
// resource is registered with the engine — and with the test mocks — directly; every IAM role
// is built from `ROLE_ACTIONS` and scoped to this stack's own ARNs (plus the configured secrets
// and their KMS key).
import * as fs from "node:fs";
import * as path from "node:path";
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";
import { XRAY_ACTIONS } from "./permissions";
import type { Component, Statement } from "./permissions";
import { createRoles, grant as grantTo, logStreams, stmt } from "./iam";
import { CONSUMER_CONTAINER, OTEL_CONTAINER, PRODUCER_CONTAINER } from "./names";
import { createAlarms } from "./alarms";
import { createScaling } from "./scaling";
import { createSchedule } from "./schedule";
import { COLLECTOR_CONFIG_VAR, collectorConfig } from "./collector";
import { buildVariables, consumerEnv, envList, producerEnv, taskSecrets } from "./environment";
import type { EnvRefs } from "./environment";

export { EMF_METRICS, METRICS_NAMESPACE } from "./alarms";

/** The TTL attribute of the job-record table (clean-up only; never relied on for correctness). */
export const TTL_ATTRIBUTE = "expires_ttl";

/** Secret ids `buildspec.yml` names by default; the program substitutes the stack's ARNs. */
export const BUILDSPEC_SECRET_PLACEHOLDERS = {
  githubToken: "kiro-codebuild-worker/github-token",
  kiroApiKey: "kiro-codebuild-worker/kiro-api-key",
} as const;

/** Default location of the repository's buildspec. */
export const BUILDSPEC_PATH = path.join(__dirname, "..", "..", "buildspec.yml");

export { CONSUMER_CONTAINER, OTEL_CONTAINER, PRODUCER_CONTAINER } from "./names";

export interface Deployment {
  queue: aws.sqs.Queue;
  dlq: aws.sqs.Queue;
  table: aws.dynamodb.Table;
  repository: aws.ecr.Repository;
  cluster: aws.ecs.Cluster;
  consumerService: aws.ecs.Service;
  consumerTaskDefinition: aws.ecs.TaskDefinition;
  producerTaskDefinition: aws.ecs.TaskDefinition;
  project: aws.codebuild.Project;
  schedule: aws.scheduler.Schedule;
  scheduleDlq: aws.sqs.Queue;
  alarmTopic: aws.sns.Topic;
  roles: Record<Component, aws.iam.Role>;
}

/** The buildspec CodeBuild runs: the repository's file with the stack's secret ARNs in place of
 *  the default secret names. Throws if a placeholder is missing (the file and the program
 *  would disagree about where the secrets come from). */
export function renderBuildspec(text: string, cfg: Pick<StackConfig, "githubTokenSecretArn" | "kiroApiKeySecretArn">): string {
  let out = text;
  const swaps: [string, string][] = [
    [BUILDSPEC_SECRET_PLACEHOLDERS.githubToken, cfg.githubTokenSecretArn],
    [BUILDSPEC_SECRET_PLACEHOLDERS.kiroApiKey, cfg.kiroApiKeySecretArn],
  ];
  for (const [placeholder, arn] of swaps) {
    const re = new RegExp(`(:\\s*)${placeholder.replace(/[/.-]/g, "\\$&")}\\s*$`, "m");
    if (!re.test(out)) throw new Error(`buildspec.yml has no secrets-manager entry for ${placeholder}`);
    out = out.replace(re, `$1${arn}`);
  }
  return out;
}

export function createStack(cfg: StackConfig, opts: { buildspecText?: string } = {}): Deployment {
  const prefix = `kiro-${cfg.stack}`;
  const tags = { "kiro:stack": cfg.stack, "kiro:app": "kiro-codebuild-worker" };
  const region = aws.getRegionOutput().region;

  // ── Queues ────────────────────────────────────────────────────────────────────────────────
  const dlq = new aws.sqs.Queue("dlq", {
    name: `${prefix}-dlq.fifo`,
    fifoQueue: true,
    contentBasedDeduplication: false,
    messageRetentionSeconds: 14 * 24 * 3600,
    sqsManagedSseEnabled: true,
    tags,
  });
  const queue = new aws.sqs.Queue("queue", {
    name: `${prefix}-work.fifo`,
    fifoQueue: true,
    contentBasedDeduplication: false,
    deduplicationScope: "messageGroup",
    fifoThroughputLimit: "perMessageGroupId",
    // The consumer's defaults (consumer/src/defaults.rs: VISIBILITY, RECEIVE_WAIT), which it
    // also sends with every receive; tests/seams.test.ts holds them equal.
    visibilityTimeoutSeconds: 300,
    receiveWaitTimeSeconds: 20,
    messageRetentionSeconds: 14 * 24 * 3600,
    sqsManagedSseEnabled: true,
    // A safety net far above the consumer's attempt budget: the consumer dead-letters
    // explicitly with the reason; this only catches messages it can never settle.
    redrivePolicy: pulumi.jsonStringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 50 }),
    tags,
  });
  new aws.sqs.RedriveAllowPolicy("dlq-redrive-allow", {
    queueUrl: dlq.url,
    redriveAllowPolicy: pulumi.jsonStringify({ redrivePermission: "byQueue", sourceQueueArns: [queue.arn] }),
  });

  // ── Job-record table ──────────────────────────────────────────────────────────────────────
  const table = new aws.dynamodb.Table("jobs", {
    name: `${prefix}-jobs`,
    billingMode: "PAY_PER_REQUEST",
    hashKey: "pk",
    rangeKey: "sk",
    attributes: [
      { name: "pk", type: "S" },
      { name: "sk", type: "S" },
    ],
    ttl: { attributeName: TTL_ATTRIBUTE, enabled: true },
    pointInTimeRecovery: { enabled: true },
    serverSideEncryption: { enabled: true },
    deletionProtectionEnabled: cfg.deletionProtection,
    tags,
  });

  // ── Registry ──────────────────────────────────────────────────────────────────────────────
  const repository = new aws.ecr.Repository("consumer-image", {
    name: `${prefix}/consumer`,
    imageTagMutability: "IMMUTABLE",
    imageScanningConfiguration: { scanOnPush: true },
    encryptionConfigurations: [{ encryptionType: "AES256" }],
    forceDelete: !cfg.deletionProtection,
    tags,
  });
  new aws.ecr.LifecyclePolicy("consumer-image-lifecycle", {
    repository: repository.name,
    policy: JSON.stringify({
      rules: [
        {
          rulePriority: 1,
          description: "keep the last 20 images",
          selection: { tagStatus: "any", countType: "imageCountMoreThan", countNumber: 20 },
          action: { type: "expire" },
        },
      ],
    }),
  });
  const image = pulumi.interpolate`${repository.repositoryUrl}:${cfg.imageTag}`;

  // ── Logs ──────────────────────────────────────────────────────────────────────────────────
  const logGroup = (name: string) =>
    new aws.cloudwatch.LogGroup(`${name}-logs`, {
      name: `/${prefix}/${name}`,
      retentionInDays: cfg.logRetentionDays,
      tags,
    });
  const consumerLogs = logGroup("consumer");
  const producerLogs = logGroup("producer");
  const buildLogs = logGroup("codebuild");
  // The collector sidecar's awsemf exporter writes the consumer's OTLP metrics here.
  const otelMetricsLogs = logGroup("otel-metrics");

  // ── Cluster ───────────────────────────────────────────────────────────────────────────────
  const cluster = new aws.ecs.Cluster("cluster", {
    name: prefix,
    settings: [{ name: "containerInsights", value: "enabled" }],
    tags,
  });
  const clusterTasksArn = cluster.arn.apply((arn) => `${arn.replace(":cluster/", ":task/")}/*`);

  const securityGroup = new aws.ec2.SecurityGroup("tasks", {
    name: `${prefix}-tasks`,
    description: "kiro tasks: outbound HTTPS only (AWS APIs, GitHub, image pulls)",
    vpcId: cfg.vpcId,
    egress: [{ protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"], description: "HTTPS" }],
    tags,
  });

  // ── CodeBuild report groups and project ───────────────────────────────────────────────────
  const projectName = `${prefix}-worker`;
  // CodeBuild maps the buildspec's `junit` report group to `<project>-junit`.
  const junitReports = new aws.codebuild.ReportGroup("junit-reports", {
    name: `${projectName}-junit`,
    type: "TEST",
    exportConfig: { type: "NO_EXPORT" },
    deleteReports: true,
    tags,
  });


  // ── IAM: one role per component, one inline policy each ───────────────────────────────────
  const roles = createRoles(prefix, cfg, tags);
  const grant = (component: Component, statements: pulumi.Input<Statement>[]) => grantTo(roles, component, statements);
  const containerSecrets = taskSecrets(cfg).map((x) => x.valueFrom);
  // With a customer-managed key on the secrets, whoever reads one decrypts through Secrets Manager.
  const decryptSecrets = cfg.secretsKmsKeyArn
    ? [
        stmt("DecryptSecrets", ["kms:Decrypt"], [cfg.secretsKmsKeyArn], {
          StringEquals: { "kms:ViaService": pulumi.interpolate`secretsmanager.${region}.amazonaws.com` },
        }),
      ]
    : [];
  const executionStatements = (logs: aws.cloudwatch.LogGroup, secrets: string[]) => [
    stmt("PullImageAuth", ["ecr:GetAuthorizationToken"], ["*"]),
    stmt("PullImage", ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"], [repository.arn]),
    stmt("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [logs.arn, logStreams(logs)]),
    stmt("Secrets", ["secretsmanager:GetSecretValue"], secrets),
    ...decryptSecrets,
  ];
  grant("producer-task", [stmt("Enqueue", ["sqs:SendMessage"], [queue.arn])]);
  grant("producer-execution", executionStatements(producerLogs, containerSecrets));
  grant("consumer-execution", executionStatements(consumerLogs, containerSecrets));
  grant("codebuild", [
    stmt("Logs", ["logs:CreateLogStream", "logs:PutLogEvents"], [buildLogs.arn, logStreams(buildLogs)]),
    stmt(
      "Reports",
      ["codebuild:CreateReport", "codebuild:UpdateReport", "codebuild:BatchPutTestCases"],
      [junitReports.arn],
    ),
    stmt("FenceCheck", ["dynamodb:GetItem"], [table.arn]),
    stmt("Secrets", ["secretsmanager:GetSecretValue"], [cfg.githubTokenSecretArn, cfg.kiroApiKeySecretArn, ...(cfg.githubAppKeySecretArn ? [cfg.githubAppKeySecretArn] : [])]),
    ...decryptSecrets,
  ]);

  // ── CodeBuild project ─────────────────────────────────────────────────────────────────────
  const buildspecText = opts.buildspecText ?? fs.readFileSync(BUILDSPEC_PATH, "utf8");
  const project = new aws.codebuild.Project("worker", {
    name: projectName,
    description: "Runs kiro-worker for one work item (buildspec.yml of kiro-codebuild-worker)",
    serviceRole: roles.codebuild.arn,
    buildTimeout: cfg.buildTimeoutMinutes,
    queuedTimeout: cfg.queuedTimeoutMinutes,
    concurrentBuildLimit: cfg.concurrentBuildLimit,
    // The worker clones the item's repository itself; the buildspec is this repository's,
    // inlined at deploy time with the stack's secret ARNs.
    source: { type: "NO_SOURCE", buildspec: renderBuildspec(buildspecText, cfg) },
    artifacts: { type: "NO_ARTIFACTS" },
    environment: {
      type: "LINUX_CONTAINER",
      computeType: cfg.buildComputeType,
      image: cfg.buildImage,
      imagePullCredentialsType: "CODEBUILD",
      environmentVariables: buildVariables(cfg, { tableName: table.name }),
    },
    logsConfig: { cloudwatchLogs: { status: "ENABLED", groupName: buildLogs.name }, s3Logs: { status: "DISABLED" } },
    tags,
  });

  grant("consumer-task", [
    stmt("WorkQueue", ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"], [queue.arn]),
    stmt("DeadLetter", ["sqs:SendMessage"], [dlq.arn]),
    stmt("Depth", ["sqs:GetQueueAttributes"], [queue.arn, dlq.arn]),
    stmt("JobRecords", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], [table.arn]),
    stmt(
      "Builds",
      ["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild", "codebuild:ListBuildsForProject"],
      [project.arn],
    ),
    stmt("ScaleInProtection", ["ecs:UpdateTaskProtection"], [clusterTasksArn]),
    stmt("Traces", XRAY_ACTIONS, ["*"]),
    stmt("OtlpMetrics", ["logs:CreateLogStream", "logs:PutLogEvents"], [otelMetricsLogs.arn, logStreams(otelMetricsLogs)]),
  ]);

  // ── Task definitions ──────────────────────────────────────────────────────────────────────
  const awslogs = (group: aws.cloudwatch.LogGroup, streamPrefix: string) => ({
    logDriver: "awslogs",
    options: { "awslogs-group": group.name, "awslogs-region": region, "awslogs-stream-prefix": streamPrefix },
  });
  const refs: EnvRefs = { region, queueUrl: queue.url, dlqUrl: dlq.url, tableName: table.name, projectName: project.name };
  const secrets = taskSecrets(cfg);
  const runtimePlatform = { operatingSystemFamily: "LINUX", cpuArchitecture: "X86_64" };

  const consumerContainers = pulumi.jsonStringify([
    {
      name: CONSUMER_CONTAINER,
      image,
      essential: true,
      entryPoint: ["/kiro-consumer"],
      command: ["run"],
      // Fargate's maximum: the consumer hands its jobs off on SIGTERM within this window.
      stopTimeout: 120,
      readonlyRootFilesystem: false,
      user: "65532:65532",
      environment: envList(consumerEnv(cfg, refs)),
      secrets,
      healthCheck: {
        command: ["CMD", "/kiro-consumer", "health"],
        interval: 30,
        timeout: 5,
        retries: 3,
        startPeriod: 60,
      },
      dependsOn: [{ containerName: OTEL_CONTAINER, condition: "START" }],
      logConfiguration: awslogs(consumerLogs, "consumer"),
    },
    {
      name: OTEL_CONTAINER,
      image: cfg.otelCollectorImage,
      essential: false,
      environment: [
        {
          name: COLLECTOR_CONFIG_VAR,
          value: pulumi.all([region, otelMetricsLogs.name]).apply(([r, g]) => collectorConfig({ region: r, metricsLogGroup: g })),
        },
      ],
      logConfiguration: awslogs(consumerLogs, "otel"),
    },
  ]);
  const consumerTaskDefinition = new aws.ecs.TaskDefinition("consumer-task", {
    family: `${prefix}-consumer`,
    requiresCompatibilities: ["FARGATE"],
    networkMode: "awsvpc",
    cpu: String(cfg.consumerCpu),
    memory: String(cfg.consumerMemory),
    runtimePlatform,
    executionRoleArn: roles["consumer-execution"].arn,
    taskRoleArn: roles["consumer-task"].arn,
    containerDefinitions: consumerContainers,
    tags,
  });
  const producerTaskDefinition = new aws.ecs.TaskDefinition("producer-task", {
    family: `${prefix}-producer`,
    requiresCompatibilities: ["FARGATE"],
    networkMode: "awsvpc",
    cpu: "256",
    memory: "512",
    runtimePlatform,
    executionRoleArn: roles["producer-execution"].arn,
    taskRoleArn: roles["producer-task"].arn,
    containerDefinitions: pulumi.jsonStringify([
      {
        name: PRODUCER_CONTAINER,
        image,
        essential: true,
        entryPoint: ["/kiro-producer"],
        command: ["--once"],
        stopTimeout: 30,
        user: "65532:65532",
        environment: envList(producerEnv(cfg, refs)),
        secrets,
        logConfiguration: awslogs(producerLogs, "producer"),
      },
    ]),
    tags,
  });

  // ── Consumer service and autoscaling ──────────────────────────────────────────────────────
  const network = {
    subnets: cfg.subnetIds,
    securityGroups: [securityGroup.id],
    assignPublicIp: cfg.assignPublicIp,
  };
  const consumerService = new aws.ecs.Service(
    "consumer",
    {
      name: `${prefix}-consumer`,
      cluster: cluster.arn,
      taskDefinition: consumerTaskDefinition.arn,
      launchType: "FARGATE",
      desiredCount: cfg.consumerMinTasks,
      networkConfiguration: network,
      deploymentMinimumHealthyPercent: 100,
      deploymentMaximumPercent: 200,
      deploymentCircuitBreaker: { enable: true, rollback: true },
      enableExecuteCommand: false,
      propagateTags: "SERVICE",
      tags,
    },
    // Autoscaling owns the task count after the first deploy.
    { ignoreChanges: ["desiredCount"] },
  );
  createScaling({ prefix, cfg, tags, cluster, consumerService, queue });

  // ── Alarms and the scheduled producer ──────────────────────────────────────────────────────
  const alarmTopic = createAlarms({ prefix, cfg, tags, queue, dlq, table, consumerLogs });
  const { schedule, scheduleDlq } = createSchedule({
    prefix,
    cfg,
    tags,
    cluster,
    clusterTasksArn,
    producerTaskDefinition,
    network,
    roles,
    alarmTopic,
  });

  return {
    queue,
    dlq,
    table,
    repository,
    cluster,
    consumerService,
    consumerTaskDefinition,
    producerTaskDefinition,
    project,
    schedule,
    scheduleDlq,
    alarmTopic,
    roles,
  };
}
