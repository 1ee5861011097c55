// Least privilege, measured against the code: each role grants only what a code path of its
// binary calls (backends/src/aws/*.rs; docs/iam.md names each path), scoped to the resource
// that path touches.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { deploy, one } from "./harness";
import type { Run } from "./harness";

let run: Run;
before(async () => {
  run = await deploy();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const statements = (component: string): Any[] => JSON.parse(one(run, "aws:iam/rolePolicy:RolePolicy", `${component}-policy`).inputs.policy).Statement;
const actions = (component: string): string[] => statements(component).flatMap((s) => s.Action).sort();
const resourcesOf = (component: string, action: string): string[] =>
  statements(component).filter((s) => s.Action.includes(action)).flatMap((s) => s.Resource).sort();
const arn = (type: string, name: string) => one(run, type, name).state?.arn;

describe("actions nothing calls are not granted", () => {
  test("consumer task: no dynamodb:Query / ConditionCheckItem, no message-move tasks (dlq redrive is the operator's)", () => {
    for (const a of ["dynamodb:Query", "dynamodb:ConditionCheckItem", "dynamodb:Scan", "sqs:ListMessageMoveTasks", "sqs:StartMessageMoveTask", "sqs:PurgeQueue"]) {
      assert.equal(actions("consumer-task").includes(a), false, a);
    }
  });

  test("producer task: only sqs:SendMessage, on the work queue", () => {
    assert.deepEqual(actions("producer-task"), ["sqs:SendMessage"]);
    assert.deepEqual(resourcesOf("producer-task", "sqs:SendMessage"), [arn("aws:sqs/queue:Queue", "queue")]);
  });

  test("CodeBuild: the fence check is one GetItem, no Query", () => {
    assert.equal(actions("codebuild").includes("dynamodb:Query"), false);
    assert.deepEqual(resourcesOf("codebuild", "dynamodb:GetItem"), [arn("aws:dynamodb/table:Table", "jobs")]);
  });
});

describe("each action on the resource its code path touches", () => {
  test("the consumer receives, extends and deletes on the work queue, and sends only to the DLQ", () => {
    const queue = arn("aws:sqs/queue:Queue", "queue");
    const dlq = arn("aws:sqs/queue:Queue", "dlq");
    for (const a of ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]) assert.deepEqual(resourcesOf("consumer-task", a), [queue], a);
    assert.deepEqual(resourcesOf("consumer-task", "sqs:SendMessage"), [dlq]);
    assert.deepEqual(resourcesOf("consumer-task", "sqs:GetQueueAttributes"), [dlq, queue].sort());
  });

  test("the consumer's secrets: the execution role resolves the token and the App key it passes to the container", () => {
    const secrets = resourcesOf("consumer-execution", "secretsmanager:GetSecretValue");
    const container = JSON.parse(one(run, "aws:ecs/taskDefinition:TaskDefinition", "consumer-task").inputs.containerDefinitions)[0];
    assert.deepEqual(secrets, container.secrets.map((s: Any) => s.valueFrom).sort());
  });

  test("without secretsKmsKeyArn no role may use KMS", () => {
    for (const c of ["producer-execution", "consumer-execution", "codebuild", "consumer-task", "producer-task", "scheduler"]) {
      assert.equal(actions(c).some((a) => a.startsWith("kms:")), false, c);
    }
  });
});
