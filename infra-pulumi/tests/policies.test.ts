// Policy checks: every resource the program registers satisfies every rule, each role grants
// exactly its documented actions, and each rule fires on a bad resource.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { COMPONENTS, ROLE_ACTIONS, SECRET_READERS } from "../src/permissions";
import { RULES, T, checkAll, policyStatements } from "../src/policies";
import type { PolicyContext, ResourceRecord } from "../src/policies";
import { deploy, one, policyContext } from "./harness";
import type { Run } from "./harness";

let run: Run;
let ctx: PolicyContext;
before(async () => {
  run = await deploy();
  ctx = policyContext(run.cfg);
});

describe("the program", () => {
  test("satisfies every policy over every registered resource", () => {
    assert.ok(run.resources.length >= 40, `only ${run.resources.length} resources registered`);
    assert.deepEqual(checkAll(run.resources, ctx), []);
  });

  test("has one role per component, each granting exactly the documented actions", () => {
    const roles = run.resources.filter((r) => r.type === T.role).map((r) => r.inputs.name).sort();
    assert.deepEqual(roles, COMPONENTS.map((c) => `kiro-test-${c}`).sort());
    for (const c of COMPONENTS) {
      const policy = one(run, T.rolePolicy, `${c}-policy`);
      const granted = new Set((policyStatements(policy) ?? []).flatMap((s) => s.Action as string[]));
      assert.deepEqual([...granted].sort(), [...ROLE_ACTIONS[c]].sort(), c);
    }
  });

  test("uses Resource \"*\" only for ECR authorisation and X-Ray", () => {
    const star = run.resources
      .flatMap((r) => policyStatements(r) ?? [])
      .filter((s) => (s.Resource as string[]).includes("*"))
      .flatMap((s) => s.Action as string[]);
    assert.ok(star.length > 0);
    for (const a of star) assert.match(a, /^(ecr:GetAuthorizationToken|xray:\w+)$/);
  });
});

// ── Negative tests: each rule fires on a bad resource ──────────────────────────────────────
const rolePolicy = (component: string, statements: object[], role = `kiro-test-${component}`): ResourceRecord => ({
  type: T.rolePolicy,
  name: `${component}-policy`,
  inputs: { name: component, role, policy: JSON.stringify({ Version: "2012-10-17", Statement: statements }) },
});
const producerOk = [
  { Effect: "Allow", Action: ["sqs:SendMessage"], Resource: ["arn:aws:sqs:eu-west-1:123456789012:kiro-test-work.fifo"] },
];
const violations = (resources: ResourceRecord[], rule: string) => checkAll(resources, ctx).filter((v) => v.rule === rule);

describe("each policy fires on a bad resource", () => {
  test("a good producer policy passes every rule (control)", () => {
    const role: ResourceRecord = { type: T.role, name: "r", inputs: { name: "kiro-test-producer-task" } };
    assert.deepEqual(checkAll([role, rolePolicy("producer-task", producerOk)], ctx), []);
  });

  test("iam-no-wildcard-action: `*`, `sqs:*` and NotAction", () => {
    for (const bad of [
      { Effect: "Allow", Action: ["*"], Resource: ["arn:aws:sqs:eu-west-1:123456789012:kiro-test-work.fifo"] },
      { Effect: "Allow", Action: ["sqs:*"], Resource: ["arn:aws:sqs:eu-west-1:123456789012:kiro-test-work.fifo"] },
      { Effect: "Allow", NotAction: ["iam:CreateUser"], Action: [], Resource: ["arn:aws:sqs:eu-west-1:123456789012:kiro-test-work.fifo"] },
    ]) {
      assert.equal(violations([rolePolicy("producer-task", [bad])], "iam-no-wildcard-action").length, 1, JSON.stringify(bad));
    }
    // Also inside a role's inline policies and a standalone policy.
    const inline: ResourceRecord = {
      type: T.role,
      name: "r",
      inputs: { name: "x", inlinePolicies: [{ policy: JSON.stringify({ Statement: { Effect: "Allow", Action: "*", Resource: "*" } }) }] },
    };
    assert.equal(violations([inline], "iam-no-wildcard-action").length, 1);
  });

  test("iam-actions-match-component: an extra action, a missing action, an unknown component, the wrong role", () => {
    const extra = [...producerOk, { Effect: "Allow", Action: ["sqs:DeleteMessage"], Resource: producerOk[0].Resource }];
    assert.match(violations([rolePolicy("producer-task", extra)], "iam-actions-match-component")[0].message, /undocumented actions.*sqs:DeleteMessage/);
    const missing = [{ ...producerOk[0], Action: [] }];
    assert.match(violations([rolePolicy("producer-task", missing)], "iam-actions-match-component")[0].message, /does not grant.*sqs:SendMessage/);
    const kms = [...producerOk, { Effect: "Allow", Action: ["kms:Decrypt"], Resource: ["arn:aws:kms:eu-west-1:123456789012:key/k"] }];
    assert.match(violations([rolePolicy("producer-task", kms)], "iam-actions-match-component")[0].message, /undocumented actions.*kms:Decrypt/, "KMS only for secret readers");
    assert.match(violations([rolePolicy("admin", producerOk)], "iam-actions-match-component")[0].message, /not a documented component/);
    assert.match(violations([rolePolicy("producer-task", producerOk, "kiro-test-consumer-task")], "iam-actions-match-component")[0].message, /attached to role/);
    const attachment: ResourceRecord = { type: T.attachment, name: "a", inputs: { role: "kiro-test-producer-task", policyArn: "arn:aws:iam::aws:policy/AdministratorAccess" } };
    assert.equal(violations([attachment], "iam-actions-match-component").length, 1);
  });

  test("iam-resources-scoped: `*` for a scoped action, another stack's ARN, a non-ARN", () => {
    const star = [{ ...producerOk[0], Resource: ["*"] }];
    assert.match(violations([rolePolicy("producer-task", star)], "iam-resources-scoped")[0].message, /Resource "\*" for actions/);
    const foreign = [{ ...producerOk[0], Resource: ["arn:aws:sqs:eu-west-1:123456789012:kiro-production-work.fifo"] }];
    assert.match(violations([rolePolicy("producer-task", foreign)], "iam-resources-scoped")[0].message, /belongs to neither/);
    const notArn = [{ ...producerOk[0], Resource: ["kiro-test-work.fifo"] }];
    assert.equal(violations([rolePolicy("producer-task", notArn)], "iam-resources-scoped").length, 1);
    // X-Ray on `*` is allowed.
    const xray = [{ Effect: "Allow", Action: ["xray:PutTraceSegments"], Resource: ["*"] }];
    assert.equal(violations([rolePolicy("consumer-task", xray)], "iam-resources-scoped").length, 0);
  });

  test("iam-passrole-condition: iam:PassRole without iam:PassedToService", () => {
    const role = "arn:aws:iam::123456789012:role/kiro-test-producer-task";
    const pass = { Effect: "Allow", Action: ["ecs:RunTask", "iam:PassRole"], Resource: [role] };
    assert.equal(violations([rolePolicy("scheduler", [pass])], "iam-passrole-condition").length, 1);
    const other = { ...pass, Condition: { StringLike: { "iam:AssociatedResourceARN": "*" } } };
    assert.equal(violations([rolePolicy("scheduler", [other])], "iam-passrole-condition").length, 1);
    const ok = { ...pass, Condition: { StringEquals: { "iam:PassedToService": "ecs-tasks.amazonaws.com" } } };
    assert.equal(violations([rolePolicy("scheduler", [ok])], "iam-passrole-condition").length, 0);
  });

  test("kms-via-service: kms:Decrypt without kms:ViaService", () => {
    const key = "arn:aws:kms:eu-west-1:123456789012:key/k";
    const bare = { Effect: "Allow", Action: ["kms:Decrypt"], Resource: [key] };
    assert.equal(violations([rolePolicy("codebuild", [bare])], "kms-via-service").length, 1);
    const ok = { ...bare, Condition: { StringEquals: { "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com" } } };
    assert.equal(violations([rolePolicy("codebuild", [ok])], "kms-via-service").length, 0);
  });

  test("iam-one-policy-per-role: a role without its policy", () => {
    const role: ResourceRecord = { type: T.role, name: "r", inputs: { name: "kiro-test-producer-task" } };
    assert.equal(violations([role], "iam-one-policy-per-role").length, 1);
  });

  test("log-retention: a log group kept forever", () => {
    const lg = (retentionInDays?: number): ResourceRecord => ({ type: T.logGroup, name: "lg", inputs: { name: "/x", retentionInDays } });
    assert.equal(violations([lg()], "log-retention").length, 1);
    assert.equal(violations([lg(0)], "log-retention").length, 1);
    assert.equal(violations([lg(30)], "log-retention").length, 0);
  });

  test("queue-encrypted and table-encrypted: unencrypted queue and table", () => {
    assert.equal(violations([{ type: T.queue, name: "q", inputs: { fifoQueue: true } }], "queue-encrypted").length, 1);
    assert.equal(violations([{ type: T.queue, name: "q", inputs: { kmsMasterKeyId: "alias/x" } }], "queue-encrypted").length, 0);
    assert.equal(violations([{ type: T.table, name: "t", inputs: {} }], "table-encrypted").length, 1);
    assert.equal(violations([{ type: T.table, name: "t", inputs: { serverSideEncryption: { enabled: false } } }], "table-encrypted").length, 1);
  });

  test("fifo-dead-letter-queue: a FIFO queue with a standard DLQ", () => {
    const dlq = (fifoQueue: boolean): ResourceRecord => ({ type: T.queue, name: "dlq", inputs: { fifoQueue, sqsManagedSseEnabled: true }, state: { arn: "arn:dlq" } });
    const q: ResourceRecord = {
      type: T.queue,
      name: "q",
      inputs: { fifoQueue: true, sqsManagedSseEnabled: true, redrivePolicy: JSON.stringify({ deadLetterTargetArn: "arn:dlq", maxReceiveCount: 50 }) },
    };
    assert.equal(violations([q, dlq(false)], "fifo-dead-letter-queue").length, 1);
    assert.equal(violations([q, dlq(true)], "fifo-dead-letter-queue").length, 0);
    assert.equal(violations([q], "fifo-dead-letter-queue").length, 1, "unknown target");
  });

  test("secrets-by-reference and ecs-stop-timeout: a plain token and a 300 s stop timeout", () => {
    const td: ResourceRecord = {
      type: T.taskDefinition,
      name: "td",
      inputs: { containerDefinitions: JSON.stringify([{ name: "c", stopTimeout: 300, environment: [{ name: "GITHUB_TOKEN", value: "ghp_x" }, { name: "KIRO_BACKEND", value: "aws" }] }]) },
    };
    assert.match(violations([td], "secrets-by-reference")[0].message, /GITHUB_TOKEN/);
    assert.equal(violations([td], "secrets-by-reference").length, 1);
    assert.match(violations([td], "ecs-stop-timeout")[0].message, /stopTimeout 300/);
  });

  test("every rule has a negative test above", () => {
    assert.deepEqual(RULES.map((r) => r.name).sort(), [
      "ecs-stop-timeout",
      "fifo-dead-letter-queue",
      "iam-actions-match-component",
      "iam-no-wildcard-action",
      "iam-one-policy-per-role",
      "iam-passrole-condition",
      "iam-resources-scoped",
      "kms-via-service",
      "log-retention",
      "queue-encrypted",
      "secrets-by-reference",
      "table-encrypted",
    ]);
  });
});

describe("the program with a flipped setting fails the policies", () => {
  test("the real DLQ made standard and a wildcard added to the consumer's policy are reported", () => {
    const flipped = run.resources.map((r) => {
      if (r.type === T.queue && r.name === "dlq") return { ...r, inputs: { ...r.inputs, fifoQueue: false } };
      if (r.type === T.rolePolicy && r.name === "consumer-task-policy") {
        const doc = JSON.parse(r.inputs.policy);
        doc.Statement.push({ Effect: "Allow", Action: ["dynamodb:*"], Resource: ["*"] });
        return { ...r, inputs: { ...r.inputs, policy: JSON.stringify(doc) } };
      }
      return r;
    });
    const rules = new Set(checkAll(flipped, ctx).map((v) => v.rule));
    assert.deepEqual([...rules].sort(), ["fifo-dead-letter-queue", "iam-actions-match-component", "iam-no-wildcard-action", "iam-resources-scoped"]);
  });
});

describe("documentation", () => {
  test("docs/iam.md lists, per role, exactly ROLE_ACTIONS (plus kms:Decrypt for the secret readers)", () => {
    const doc = fs.readFileSync(path.join(__dirname, "..", "..", "docs", "iam.md"), "utf8");
    const section = doc.split("## The deployed roles")[1]?.split("\n## ")[0] ?? "";
    const rows = new Map<string, string[]>();
    for (const line of section.split("\n")) {
      const m = /^\| `([a-z-]+)` \| `([a-z0-9]+:\w+)` \| [^|]+ \| [^|]+ \|$/.exec(line);
      if (m) rows.set(m[1], [...(rows.get(m[1]) ?? []), m[2]]);
    }
    assert.deepEqual([...rows.keys()].sort(), [...COMPONENTS].sort());
    for (const c of COMPONENTS) assert.deepEqual(rows.get(c), [...ROLE_ACTIONS[c]], c);
    const kms = section.split("\n\n").find((p) => p.includes("`kms:Decrypt`")) ?? "";
    for (const c of SECRET_READERS) assert.ok(kms.includes(`\`${c}\``), `the kms:Decrypt paragraph names ${c}`);
  });

  test("the README's deployment section links docs/iam.md", () => {
    const readme = fs.readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
    const section = readme.split("## Deploying to AWS")[1]?.split("\n## ")[0] ?? "";
    assert.match(section, /docs\/iam\.md/);
  });
});
