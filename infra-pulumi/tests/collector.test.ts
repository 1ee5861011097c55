// The consumer's ADOT collector sidecar: its configuration (both pipelines), how it reaches the
// collector, and the task role's permissions for what it exports.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { parse } from "yaml";
import { COLLECTOR_CONFIG_VAR, OTLP_METRICS_NAMESPACE } from "../src/collector";
import { METRICS_NAMESPACE } from "../src/alarms";
import { deploy, one } from "./harness";
import type { Run } from "./harness";

let run: Run;
before(async () => {
  run = await deploy();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const containers = (): Any[] => JSON.parse(one(run, "aws:ecs/taskDefinition:TaskDefinition", "consumer-task").inputs.containerDefinitions);
const collector = (): Any => containers().find((c) => c.name === "otel-collector");
const config = (): Any => parse(collector().environment.find((e: Any) => e.name === COLLECTOR_CONFIG_VAR).value);

describe("collector configuration", () => {
  test("is handed over in AOT_CONFIG_CONTENT (not the bundled traces-only ecs-xray.yaml)", () => {
    const c = collector();
    assert.equal(COLLECTOR_CONFIG_VAR, "AOT_CONFIG_CONTENT");
    assert.equal(c.command, undefined);
    assert.ok(config().service);
  });

  test("a traces pipeline to X-Ray and a metrics pipeline to CloudWatch EMF, both from OTLP", () => {
    const { pipelines } = config().service;
    assert.deepEqual(pipelines.traces.receivers, ["otlp"]);
    assert.deepEqual(pipelines.traces.exporters, ["awsxray"]);
    assert.deepEqual(pipelines.metrics.receivers, ["otlp"]);
    assert.deepEqual(pipelines.metrics.exporters, ["awsemf"]);
  });

  test("every component a pipeline names is defined", () => {
    const c = config();
    for (const [name, p] of Object.entries(c.service.pipelines) as [string, Any][]) {
      for (const r of p.receivers) assert.ok(r in c.receivers, `${name}: receiver ${r}`);
      for (const x of p.processors ?? []) assert.ok(x in c.processors, `${name}: processor ${x}`);
      for (const e of p.exporters) assert.ok(e in c.exporters, `${name}: exporter ${e}`);
    }
    for (const e of c.service.extensions ?? []) assert.ok(e in c.extensions, `extension ${e}`);
  });

  test("OTLP/HTTP listens where the consumer exports (OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318)", () => {
    const [consumer] = containers();
    const env = Object.fromEntries(consumer.environment.map((e: Any) => [e.name, e.value]));
    const port = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT).port;
    assert.equal(config().receivers.otlp.protocols.http.endpoint, `127.0.0.1:${port}`);
  });

  test("EMF metrics go to the stack's own log group, in a namespace apart from the alarms' EMF metrics", () => {
    const emf = config().exporters.awsemf;
    assert.equal(emf.log_group_name, "/kiro-test/otel-metrics");
    assert.equal(emf.namespace, OTLP_METRICS_NAMESPACE);
    assert.notEqual(emf.namespace, METRICS_NAMESPACE);
    assert.equal(emf.region, "eu-west-1");
    assert.equal(config().exporters.awsxray.region, "eu-west-1");
    const group = one(run, "aws:cloudwatch/logGroup:LogGroup", "otel-metrics-logs").inputs;
    assert.deepEqual([group.name, group.retentionInDays], ["/kiro-test/otel-metrics", 30]);
  });

  test("the task role may write the EMF log events to that group only, and send traces to X-Ray", () => {
    const doc = JSON.parse(one(run, "aws:iam/rolePolicy:RolePolicy", "consumer-task-policy").inputs.policy);
    const logs = doc.Statement.filter((s: Any) => s.Action.some((a: string) => a.startsWith("logs:")));
    assert.equal(logs.length, 1);
    assert.deepEqual(logs[0].Action, ["logs:CreateLogStream", "logs:PutLogEvents"]);
    const arn = one(run, "aws:cloudwatch/logGroup:LogGroup", "otel-metrics-logs").state?.arn;
    assert.deepEqual(logs[0].Resource, [arn, `${arn}:log-stream:*`]);
    assert.ok(doc.Statement.some((s: Any) => s.Action.includes("xray:PutTraceSegments")));
  });
});
