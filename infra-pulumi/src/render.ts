// The rendered stack: what AWS would receive for one stack file, as one JSON document — queues
// and their attributes, the table, the secrets, each task definition's containers (environment
// and secrets as maps), the service, the CodeBuild project (inlined buildspec, environment),
// the schedule and its target, every role's merged policy statements, the alarms and the
// collector configuration. The deployment rehearsal starts the binaries from this document.
//
// Invariant: a pure function of the resources the program registered under the mocks (all
// inputs resolved) and the parsed stack configuration; every value is a string, number,
// boolean or null, and lists that are sets (actions, resources, environment variables,
// alarms, roles' principals) are sorted, so the same stack file always renders byte-identically.
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { PROJECT } from "./config";
import type { RawConfig, StackConfig } from "./config";
import { COLLECTOR_CONFIG_VAR } from "./collector";
import { OTEL_CONTAINER } from "./names";
import { T, policyStatements } from "./policies";
import type { ResourceRecord } from "./policies";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** A stack file: the stack name (from `Pulumi.<stack>.yaml`), its region, and its raw config. */
export interface StackFile {
  stack: string;
  region: string;
  raw: RawConfig;
}

/** Read `Pulumi.<stack>.yaml` the way `pulumi.Config.get` hands values to the program
 *  (structured values as JSON text, scalars as text). Throws naming the file on a bad name,
 *  unparsable YAML or a missing `aws:region`. */
export function readStackFile(file: string): StackFile {
  const m = /^Pulumi\.([^.]+)\.yaml$/.exec(path.basename(file));
  if (!m) throw new Error(`${file}: a stack file is named Pulumi.<stack>.yaml`);
  const doc = parse(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> } | null;
  const values = doc?.config ?? {};
  const region = values["aws:region"];
  if (typeof region !== "string" || region === "") throw new Error(`${file}: aws:region is not set`);
  const raw: RawConfig = (k) => {
    const v = values[`${PROJECT}:${k}`];
    return v === undefined || v === null ? undefined : typeof v === "object" ? JSON.stringify(v) : String(v);
  };
  return { stack: m[1], region, raw };
}

const sorted = <X>(xs: X[], key: (x: X) => string = (x) => String(x)): X[] => [...xs].sort((a, b) => key(a).localeCompare(key(b)));
const list = (v: unknown): string[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);
const orNull = <X>(v: X | undefined): X | null => (v === undefined ? null : v);
const json = (v: unknown): Any => (typeof v === "string" ? JSON.parse(v) : v);

class Records {
  constructor(readonly all: ResourceRecord[]) {}
  ofType(type: string): ResourceRecord[] {
    return this.all.filter((r) => r.type === type);
  }
  one(type: string, name: string): ResourceRecord {
    const found = this.all.filter((r) => r.type === type && r.name === name);
    if (found.length !== 1) throw new Error(`expected one ${type} named ${name}, found ${found.length}`);
    return found[0];
  }
  maybe(type: string, name: string): ResourceRecord | undefined {
    return this.all.find((r) => r.type === type && r.name === name);
  }
}

/** SQS's attribute names for the provider's queue inputs (defaults as the provider applies them). */
function queueDoc(rs: Records, q: ResourceRecord) {
  const i = q.inputs;
  const attributes: Record<string, string> = {
    DelaySeconds: String(i.delaySeconds ?? 0),
    MaximumMessageSize: String(i.maxMessageSize ?? 262144),
    MessageRetentionPeriod: String(i.messageRetentionSeconds ?? 345600),
    ReceiveMessageWaitTimeSeconds: String(i.receiveWaitTimeSeconds ?? 0),
    VisibilityTimeout: String(i.visibilityTimeoutSeconds ?? 30),
  };
  if (i.fifoQueue === true) {
    attributes.FifoQueue = "true";
    attributes.ContentBasedDeduplication = String(i.contentBasedDeduplication === true);
    if (i.deduplicationScope) attributes.DeduplicationScope = i.deduplicationScope;
    if (i.fifoThroughputLimit) attributes.FifoThroughputLimit = i.fifoThroughputLimit;
  }
  if (i.redrivePolicy) attributes.RedrivePolicy = String(i.redrivePolicy);
  if (i.sqsManagedSseEnabled === true) attributes.SqsManagedSseEnabled = "true";
  if (i.kmsMasterKeyId) attributes.KmsMasterKeyId = i.kmsMasterKeyId;
  const allow = rs.ofType("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy").find((p) => p.inputs.queueUrl === q.state?.url);
  if (allow) attributes.RedriveAllowPolicy = String(allow.inputs.redriveAllowPolicy);
  return { name: i.name, url: q.state?.url, arn: q.state?.arn, attributes: Object.fromEntries(sorted(Object.entries(attributes), ([k]) => k)) };
}

function containerDoc(c: Any) {
  const pairs = (xs: Any[] | undefined, value: string) => Object.fromEntries(sorted((xs ?? []).map((e: Any) => [e.name, e[value]]), ([k]) => k));
  return {
    name: c.name,
    image: c.image,
    entryPoint: orNull(c.entryPoint),
    command: orNull(c.command),
    environment: pairs(c.environment, "value"),
    secrets: pairs(c.secrets, "valueFrom"),
    essential: c.essential !== false,
    stopTimeout: orNull(c.stopTimeout),
    user: orNull(c.user),
    healthCheck: orNull(c.healthCheck?.command),
    dependsOn: orNull(c.dependsOn),
    logGroup: orNull(c.logConfiguration?.options?.["awslogs-group"]),
  };
}

function taskDoc(td: ResourceRecord) {
  const i = td.inputs;
  return {
    family: i.family,
    arn: td.state?.arn,
    taskRoleArn: i.taskRoleArn,
    executionRoleArn: i.executionRoleArn,
    cpu: i.cpu,
    memory: i.memory,
    tags: i.tags ?? {},
    containers: (json(i.containerDefinitions) as Any[]).map(containerDoc),
  };
}

function roleDocs(rs: Records, prefix: string) {
  const roles: Record<string, unknown> = {};
  for (const role of sorted(rs.ofType(T.role), (r) => r.inputs.name)) {
    const name: string = role.inputs.name;
    const key = name.startsWith(`${prefix}-`) ? name.slice(prefix.length + 1) : name;
    const trust = json(role.inputs.assumeRolePolicy) as { Statement: Any[] };
    const assumedBy = sorted(trust.Statement.flatMap((s: Any) => list(s.Principal?.Service)));
    // The role's whole policy: its inline policies, its RolePolicy resources, and any policies
    // attached to it (the program attaches none; they would show here if it did).
    const attached = rs
      .ofType(T.attachment)
      .filter((a) => a.inputs.role === name)
      .flatMap((a) => rs.ofType(T.policy).filter((p) => p.state?.arn === a.inputs.policyArn));
    const sources = [role, ...rs.ofType(T.rolePolicy).filter((p) => p.inputs.role === name), ...attached];
    const statements = sources.flatMap((r) => policyStatements(r) ?? []).map((s: Any) => ({
      sid: orNull(s.Sid),
      effect: s.Effect,
      actions: sorted(list(s.Action)),
      resources: sorted(list(s.Resource)),
      condition: orNull(s.Condition),
    }));
    roles[key] = { name, arn: role.state?.arn, assumedBy, statements };
  }
  return roles;
}

function alarmDoc(a: ResourceRecord) {
  const i = a.inputs;
  return {
    name: i.name,
    description: orNull(i.alarmDescription),
    namespace: orNull(i.namespace),
    metricName: orNull(i.metricName),
    statistic: orNull(i.statistic),
    period: orNull(i.period),
    unit: orNull(i.unit),
    dimensions: orNull(i.dimensions),
    metrics: i.metricQueries
      ? i.metricQueries.map((q: Any) => ({
          id: q.id,
          expression: orNull(q.expression),
          namespace: orNull(q.metric?.namespace),
          metricName: orNull(q.metric?.metricName),
          stat: orNull(q.metric?.stat),
          period: orNull(q.metric?.period),
          dimensions: orNull(q.metric?.dimensions),
          returnData: q.returnData === true,
        }))
      : null,
    comparisonOperator: i.comparisonOperator,
    threshold: i.threshold,
    evaluationPeriods: i.evaluationPeriods,
    datapointsToAlarm: orNull(i.datapointsToAlarm),
    treatMissingData: orNull(i.treatMissingData),
    alarmActions: sorted(list(i.alarmActions)),
  };
}

/** The rendered document of one run of the program. */
export function renderDocument(cfg: StackConfig, resources: ResourceRecord[], m: { region: string; account: string }) {
  const rs = new Records(resources);
  const prefix = `kiro-${cfg.stack}`;
  const consumerTd = rs.one(T.taskDefinition, "consumer-task");
  const project = rs.one("aws:codebuild/project:Project", "worker");
  const schedule = rs.one("aws:scheduler/schedule:Schedule", "producer-schedule");
  const service = rs.one("aws:ecs/service:Service", "consumer");
  const table = rs.one(T.table, "jobs");
  const scheduleDlq = rs.maybe(T.queue, "schedule-dlq");
  const otel = (json(consumerTd.inputs.containerDefinitions) as Any[]).find((c) => c.name === OTEL_CONTAINER);
  const collectorConfig = (otel?.environment ?? []).find((e: Any) => e.name === COLLECTOR_CONFIG_VAR)?.value;
  const p = project.inputs;
  const t = schedule.inputs.target;
  const s = service.inputs;
  return {
    stack: cfg.stack,
    region: m.region,
    account: m.account,
    outputs: {
      queueUrl: rs.one(T.queue, "queue").state?.url,
      dlqUrl: rs.one(T.queue, "dlq").state?.url,
      leaseTable: table.inputs.name,
      codebuildProject: p.name,
      cluster: rs.one("aws:ecs/cluster:Cluster", "cluster").inputs.name,
      consumerService: s.name,
      repositoryUrl: rs.one("aws:ecr/repository:Repository", "consumer-image").state?.repositoryUrl,
      alarmTopicArn: rs.one("aws:sns/topic:Topic", "alarms").state?.arn,
    },
    queue: queueDoc(rs, rs.one(T.queue, "queue")),
    dlq: queueDoc(rs, rs.one(T.queue, "dlq")),
    scheduleDlq: scheduleDlq ? queueDoc(rs, scheduleDlq) : null,
    table: {
      name: table.inputs.name,
      arn: table.state?.arn,
      hashKey: table.inputs.hashKey,
      rangeKey: orNull(table.inputs.rangeKey),
      attributes: sorted(table.inputs.attributes as Any[], (a) => a.name).map((a) => ({ name: a.name, type: a.type })),
      billingMode: table.inputs.billingMode,
      ttlAttribute: table.inputs.ttl?.enabled ? table.inputs.ttl.attributeName : null,
    },
    secrets: {
      githubToken: cfg.githubTokenSecretArn,
      kiroApiKey: cfg.kiroApiKeySecretArn,
      githubAppKey: orNull(cfg.githubAppKeySecretArn),
      kmsKeyArn: orNull(cfg.secretsKmsKeyArn),
    },
    tasks: { consumer: taskDoc(consumerTd), producer: taskDoc(rs.one(T.taskDefinition, "producer-task")) },
    service: {
      name: s.name,
      cluster: s.cluster,
      taskDefinition: s.taskDefinition,
      desiredCount: s.desiredCount,
      launchType: s.launchType,
      propagateTags: orNull(s.propagateTags),
      subnets: sorted(list(s.networkConfiguration?.subnets)),
      assignPublicIp: s.networkConfiguration?.assignPublicIp === true,
    },
    codebuild: {
      name: p.name,
      arn: project.state?.arn,
      serviceRoleArn: p.serviceRole,
      buildTimeout: p.buildTimeout,
      queuedTimeout: p.queuedTimeout,
      concurrentBuildLimit: p.concurrentBuildLimit,
      image: p.environment.image,
      computeType: p.environment.computeType,
      sourceType: p.source.type,
      buildspec: p.source.buildspec,
      logGroup: orNull(p.logsConfig?.cloudwatchLogs?.groupName),
      environmentVariables: sorted(p.environment.environmentVariables as Any[], (v) => v.name).map((v) => ({
        name: v.name,
        value: v.value,
        type: v.type ?? "PLAINTEXT",
      })),
    },
    schedule: {
      name: schedule.inputs.name,
      groupName: orNull(schedule.inputs.groupName),
      expression: schedule.inputs.scheduleExpression,
      state: orNull(schedule.inputs.state),
      roleArn: t.roleArn,
      target: {
        arn: t.arn,
        roleArn: t.roleArn,
        input: orNull(t.input),
        deadLetterArn: orNull(t.deadLetterConfig?.arn),
        maximumRetryAttempts: orNull(t.retryPolicy?.maximumRetryAttempts),
        ecs: {
          taskDefinitionArn: t.ecsParameters.taskDefinitionArn,
          propagateTags: orNull(t.ecsParameters.propagateTags),
          launchType: orNull(t.ecsParameters.launchType),
          taskCount: orNull(t.ecsParameters.taskCount),
          subnets: sorted(list(t.ecsParameters.networkConfiguration?.subnets)),
          assignPublicIp: t.ecsParameters.networkConfiguration?.assignPublicIp === true,
        },
      },
    },
    roles: roleDocs(rs, prefix),
    alarms: sorted(rs.ofType("aws:cloudwatch/metricAlarm:MetricAlarm"), (a) => a.inputs.name).map(alarmDoc),
    metricFilters: sorted(rs.ofType("aws:cloudwatch/logMetricFilter:LogMetricFilter"), (f) => f.inputs.name).map((f) => ({
      name: f.inputs.name,
      logGroupName: f.inputs.logGroupName,
      pattern: f.inputs.pattern,
      namespace: f.inputs.metricTransformation.namespace,
      metricName: f.inputs.metricTransformation.name,
    })),
    eventRules: sorted(rs.ofType("aws:cloudwatch/eventRule:EventRule"), (r) => r.inputs.name).map((r) => ({
      name: r.inputs.name,
      eventPattern: r.inputs.eventPattern,
      targets: sorted(rs.ofType("aws:cloudwatch/eventTarget:EventTarget").filter((x) => x.inputs.rule === r.inputs.name).map((x) => x.inputs.arn)),
    })),
    logGroups: sorted(rs.ofType(T.logGroup), (g) => g.inputs.name).map((g) => ({ name: g.inputs.name, retentionInDays: g.inputs.retentionInDays })),
    collectorConfig: orNull(collectorConfig),
  };
}
