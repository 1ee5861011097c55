// The render tool (scripts/render.ts), run as the deployment rehearsal runs it: one JSON
// document on stdout per example stack file, every value resolved, the shape the rehearsal reads.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse } from "yaml";
import { COMPONENTS } from "../src/permissions";

const ROOT = path.join(__dirname, "..");
const render = (file: string) =>
  spawnSync(process.execPath, ["--import", "tsx", "scripts/render.ts", file], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const isStr = (v: unknown) => typeof v === "string" && v.length > 0;
const PULUMI_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

function checkQueue(q: Any, what: string, fifo: boolean) {
  for (const k of ["name", "url", "arn"]) assert.ok(isStr(q[k]), `${what}.${k}`);
  for (const [k, v] of Object.entries(q.attributes)) assert.equal(typeof v, "string", `${what}.attributes.${k}`);
  assert.equal(q.attributes.FifoQueue, fifo ? "true" : undefined, what);
  assert.ok(isStr(q.attributes.VisibilityTimeout) && isStr(q.attributes.MessageRetentionPeriod), what);
  if (fifo) assert.equal(q.attributes.ContentBasedDeduplication, "false", what);
}

function checkTask(t: Any, what: string) {
  for (const k of ["family", "taskRoleArn", "executionRoleArn"]) assert.ok(isStr(t[k]), `${what}.${k}`);
  assert.equal(typeof t.tags, "object");
  assert.ok(t.containers.length >= 1);
  for (const c of t.containers) {
    assert.ok(isStr(c.name) && isStr(c.image), what);
    assert.equal(typeof c.essential, "boolean");
    for (const v of [...Object.values(c.environment), ...Object.values(c.secrets)]) assert.equal(typeof v, "string", `${what}.${c.name}`);
    assert.ok(c.entryPoint === null || Array.isArray(c.entryPoint));
    assert.ok(c.command === null || Array.isArray(c.command));
  }
}

for (const stack of ["staging", "production"]) {
  describe(`render Pulumi.${stack}.yaml`, () => {
    const r = render(`Pulumi.${stack}.yaml`);
    const doc: Any = r.status === 0 ? JSON.parse(r.stdout) : undefined;

    test("exits 0 with exactly one JSON document on stdout, nothing unresolved", () => {
      assert.equal(r.status, 0, r.stderr);
      assert.equal(typeof doc, "object");
      assert.equal(r.stdout.includes(PULUMI_UNKNOWN), false);
      assert.equal(/\[object Object\]|"undefined"|Calling \[toString\] on an \[Output/.test(r.stdout), false);
    });

    test("names the stack, moto's account and the stack's region", () => {
      const file = parse(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8")).config;
      assert.deepEqual([doc.stack, doc.account, doc.region], [stack, "123456789012", file["aws:region"]]);
    });

    test("queues, table and secrets", () => {
      checkQueue(doc.queue, "queue", true);
      checkQueue(doc.dlq, "dlq", true);
      checkQueue(doc.scheduleDlq, "scheduleDlq", false);
      assert.equal(JSON.parse(doc.queue.attributes.RedrivePolicy).deadLetterTargetArn, doc.dlq.arn);
      assert.deepEqual(
        [doc.table.name, doc.table.hashKey, doc.table.rangeKey, doc.table.billingMode, doc.table.ttlAttribute],
        [`kiro-${stack}-jobs`, "pk", "sk", "PAY_PER_REQUEST", "expires_ttl"],
      );
      assert.deepEqual(doc.table.attributes, [{ name: "pk", type: "S" }, { name: "sk", type: "S" }]);
      assert.ok(isStr(doc.secrets.githubToken) && isStr(doc.secrets.kiroApiKey));
      assert.ok(doc.secrets.githubAppKey === null || isStr(doc.secrets.githubAppKey));
      assert.ok(doc.secrets.kmsKeyArn === null || isStr(doc.secrets.kmsKeyArn));
    });

    test("tasks: each binary with the environment the stack gives it", () => {
      checkTask(doc.tasks.consumer, "consumer");
      checkTask(doc.tasks.producer, "producer");
      const consumer = doc.tasks.consumer.containers.find((c: Any) => c.name === "consumer");
      assert.deepEqual([consumer.entryPoint, consumer.command], [["/kiro-consumer"], ["run"]]);
      assert.equal(consumer.environment.KIRO_BUILD_RUNNER, "codebuild");
      assert.equal(consumer.environment.KIRO_QUEUE_URL, doc.queue.url);
      assert.equal(consumer.environment.KIRO_CODEBUILD_PROJECT, doc.codebuild.name);
      assert.equal(consumer.secrets.GITHUB_TOKEN, doc.secrets.githubToken);
      const producer = doc.tasks.producer.containers[0];
      assert.deepEqual([producer.entryPoint, producer.command], [["/kiro-producer"], ["--once"]]);
      assert.equal(producer.environment.KIRO_FORGE, "github");
      assert.ok(isStr(producer.environment.KIRO_GITHUB_PROJECT));
      assert.equal(doc.tasks.consumer.taskRoleArn, doc.roles["consumer-task"].arn);
      assert.equal(doc.tasks.producer.executionRoleArn, doc.roles["producer-execution"].arn);
    });

    test("service, CodeBuild project and schedule", () => {
      assert.ok(isStr(doc.service.name) && typeof doc.service.desiredCount === "number" && isStr(doc.service.propagateTags));
      const cb = doc.codebuild;
      for (const k of ["name", "arn", "serviceRoleArn", "image", "computeType", "buildspec"]) assert.ok(isStr(cb[k]), `codebuild.${k}`);
      for (const k of ["buildTimeout", "queuedTimeout", "concurrentBuildLimit"]) assert.equal(typeof cb[k], "number", `codebuild.${k}`);
      assert.match(cb.buildspec, /kiro-worker run/);
      assert.ok(parse(cb.buildspec).env["secrets-manager"].GITHUB_TOKEN.startsWith("arn:aws:secretsmanager:"));
      const names = cb.environmentVariables.map((v: Any) => v.name);
      assert.deepEqual(names, [...names].sort(), "sorted by name");
      for (const v of cb.environmentVariables) {
        assert.deepEqual(Object.keys(v), ["name", "value", "type"]);
        assert.equal(typeof v.value, "string", v.name);
        assert.match(v.type, /^(PLAINTEXT|SECRETS_MANAGER)$/);
      }
      const env = Object.fromEntries(cb.environmentVariables.map((v: Any) => [v.name, v.value]));
      assert.equal(env.KIRO_BACKEND, "aws");
      assert.equal(env.KIRO_LEASE_TABLE, doc.table.name);
      assert.ok(isStr(env.OTEL_EXPORTER_OTLP_ENDPOINT), "the example stacks set buildOtlpEndpoint");
      const s = doc.schedule;
      for (const k of ["name", "expression", "roleArn"]) assert.ok(isStr(s[k]), `schedule.${k}`);
      assert.equal(s.target.deadLetterArn, doc.scheduleDlq.arn);
      assert.equal(s.target.ecs.taskDefinitionArn, `${doc.tasks.producer.arn}`);
      assert.equal(s.target.ecs.propagateTags, "TASK_DEFINITION");
      assert.equal(s.target.input, null);
    });

    test("roles: the six components, each with its trust and resolved, sorted statements", () => {
      assert.deepEqual(Object.keys(doc.roles).sort(), [...COMPONENTS].sort());
      for (const [key, role] of Object.entries(doc.roles) as [string, Any][]) {
        assert.equal(role.name, `kiro-${stack}-${key}`);
        assert.ok(role.arn.startsWith("arn:aws:iam::123456789012:role/"));
        assert.ok(role.assumedBy.length >= 1 && role.assumedBy.every(isStr), key);
        assert.ok(role.statements.length >= 1, key);
        for (const st of role.statements) {
          assert.deepEqual(Object.keys(st), ["sid", "effect", "actions", "resources", "condition"]);
          assert.equal(st.effect, "Allow");
          for (const l of [st.actions, st.resources]) {
            assert.ok(l.length >= 1 && l.every(isStr), key);
            assert.deepEqual(l, [...l].sort(), key);
          }
        }
      }
      assert.deepEqual(doc.roles.codebuild.assumedBy, ["codebuild.amazonaws.com"]);
      const tag = doc.roles.scheduler.statements.find((st: Any) => st.actions.includes("ecs:TagResource"));
      assert.deepEqual(tag.condition, { StringEquals: { "ecs:CreateAction": "RunTask" } });
    });

    test("alarms and the collector configuration", () => {
      assert.ok(doc.alarms.length >= 9);
      const names = doc.alarms.map((a: Any) => a.name);
      assert.deepEqual(names, [...names].sort());
      for (const a of doc.alarms) {
        assert.ok(isStr(a.name) && isStr(a.comparisonOperator) && typeof a.threshold === "number", a.name);
        assert.ok((isStr(a.metricName) && isStr(a.namespace)) || Array.isArray(a.metrics), a.name);
      }
      assert.ok(names.includes(`kiro-${stack}-producer-failed`) && names.includes(`kiro-${stack}-producer-schedule-failed`));
      const pipelines = parse(doc.collectorConfig).service.pipelines;
      assert.deepEqual(Object.keys(pipelines).sort(), ["metrics", "traces"]);
    });
  });
}

describe("render: bad input", () => {
  test("a file not named Pulumi.<stack>.yaml, or a missing one, exits 2 naming it", () => {
    const r = render("stack.yaml");
    assert.equal(r.status, 2);
    assert.match(r.stderr, /stack\.yaml: a stack file is named Pulumi\.<stack>\.yaml/);
    assert.equal(r.stdout, "");
    assert.equal(render("Pulumi.nowhere.yaml").status, 2);
  });

  test("an invalid stack configuration exits 1 naming every bad key, and prints no document", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kiro-render-"));
    const file = path.join(dir, "Pulumi.broken.yaml");
    fs.writeFileSync(file, "config:\n  aws:region: eu-west-1\n  kiro-infra:imageTag: latest\n");
    const r = render(file);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /kiro-infra:imageTag must be an immutable image tag/);
    assert.match(r.stderr, /kiro-infra:githubProject is required/);
    assert.equal(r.stdout, "");
  });
});
