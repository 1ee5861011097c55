// Secrets under a customer-managed KMS key (`secretsKmsKeyArn`): every role that reads a secret
// may decrypt with that key, through Secrets Manager only; no other role may.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { checkAll } from "../src/policies";
import { deploy, one, policyContext, testConfig } from "./harness";
import type { Run } from "./harness";

const KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
let run: Run;
before(async () => {
  run = await deploy(testConfig({ secretsKmsKeyArn: KEY }));
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const statements = (component: string): Any[] => JSON.parse(one(run, "aws:iam/rolePolicy:RolePolicy", `${component}-policy`).inputs.policy).Statement;

describe("secrets encrypted with a customer-managed KMS key", () => {
  test("the producer's and consumer's execution roles and the build may decrypt via Secrets Manager", () => {
    for (const c of ["producer-execution", "consumer-execution", "codebuild"]) {
      const kms = statements(c).filter((s) => s.Action.includes("kms:Decrypt"));
      assert.equal(kms.length, 1, c);
      assert.deepEqual(kms[0].Action, ["kms:Decrypt"]);
      assert.deepEqual(kms[0].Resource, [KEY]);
      assert.deepEqual(kms[0].Condition, { StringEquals: { "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com" } });
    }
  });

  test("no other role may", () => {
    for (const c of ["producer-task", "consumer-task", "scheduler"]) {
      assert.equal(statements(c).some((s) => s.Action.some((a: string) => a.startsWith("kms:"))), false, c);
    }
  });

  test("the whole program still satisfies every policy", () => {
    assert.deepEqual(checkAll(run.resources, policyContext(run.cfg)), []);
  });
});
