// Stack configuration: defaults, the example stack files, and errors that name the bad key.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse } from "yaml";
import { ConfigError, PROJECT, parseConfig } from "../src/config";
import { testConfig } from "./harness";

function problems(overrides: Record<string, string | undefined>, stack = "test"): string[] {
  try {
    testConfig(overrides, stack);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail("configuration was accepted");
}

describe("stack configuration", () => {
  test("defaults", () => {
    const cfg = testConfig({ consumerMaxTasks: undefined, alarmEmail: undefined, githubAppKeySecretArn: undefined });
    assert.equal(cfg.consumerMinTasks, 0);
    assert.equal(cfg.consumerMaxTasks, 10);
    assert.equal(cfg.backlogPerTaskTarget, 8);
    assert.equal(cfg.producerSchedule, "rate(5 minutes)");
    assert.equal(cfg.buildTimeoutMinutes, 60);
    assert.equal(cfg.queuedTimeoutMinutes, 480);
    assert.equal(cfg.logRetentionDays, 30);
    assert.equal(cfg.deletionProtection, true);
    assert.equal(cfg.assignPublicIp, false);
    assert.equal(cfg.alarmEmail, undefined);
    assert.deepEqual(cfg.subnetIds, ["subnet-0aaa", "subnet-0bbb"]);
  });

  test("the example stack files (test, staging, production) are valid", () => {
    for (const stack of ["test", "staging", "production"]) {
      const file = path.join(__dirname, "..", `Pulumi.${stack}.yaml`);
      const values = parse(fs.readFileSync(file, "utf8")).config as Record<string, unknown>;
      // pulumi.Config.get returns structured values as JSON text and scalars as text.
      const get = (k: string) => {
        const v = values[`${PROJECT}:${k}`];
        return v === undefined ? undefined : typeof v === "object" ? JSON.stringify(v) : String(v);
      };
      const cfg = parseConfig(stack, get);
      assert.equal(cfg.stack, stack);
      assert.ok(cfg.consumerMaxTasks >= 1);
      for (const key of Object.keys(values)) {
        assert.match(key, /^(aws|kiro-infra):/, `${stack}: unexpected namespace in ${key}`);
      }
    }
  });

  test("a missing image tag names the key", () => {
    assert.deepEqual(problems({ imageTag: undefined }), [
      "kiro-infra:imageTag is required (an immutable image tag such as a version or commit (not 'latest'))",
    ]);
    assert.match(problems({ imageTag: "latest" })[0], /^kiro-infra:imageTag must be an immutable image tag/);
  });

  test("a non-positive max task count names the key", () => {
    assert.deepEqual(problems({ consumerMaxTasks: "0" }), ["kiro-infra:consumerMaxTasks must be between 1 and 1000, got 0"]);
    assert.deepEqual(problems({ consumerMaxTasks: "-3" }), ["kiro-infra:consumerMaxTasks must be between 1 and 1000, got -3"]);
    assert.deepEqual(problems({ consumerMaxTasks: "many" }), ['kiro-infra:consumerMaxTasks must be an integer, got "many"']);
  });

  test("every problem is reported at once", () => {
    const found = problems({
      githubTokenSecretArn: "my-token",
      kiroApiKeySecretArn: undefined,
      subnetIds: "[]",
      buildTimeoutMinutes: "3000",
      logRetentionDays: "31",
      consumerMinTasks: "9",
      producerSchedule: "every 5 minutes",
      consumerEnvironment: JSON.stringify({ GITHUB_TOKEN: "x" }),
    });
    const keys = found.map((p) => p.split(" ")[0]);
    assert.deepEqual(keys.sort(), [
      "kiro-infra:buildTimeoutMinutes",
      "kiro-infra:consumerEnvironment.GITHUB_TOKEN",
      "kiro-infra:consumerMinTasks",
      "kiro-infra:githubTokenSecretArn",
      "kiro-infra:kiroApiKeySecretArn",
      "kiro-infra:logRetentionDays",
      "kiro-infra:producerSchedule",
      "kiro-infra:subnetIds",
    ]);
    assert.match(found.find((p) => p.includes("consumerMinTasks")) ?? "", /must not exceed kiro-infra:consumerMaxTasks \(6\)/);
  });

  test("the error message lists every problem", () => {
    assert.throws(
      () => testConfig({ imageTag: undefined, consumerMaxTasks: "0" }),
      (e: Error) => e.message.startsWith("invalid stack configuration:") && e.message.includes("imageTag") && e.message.includes("consumerMaxTasks"),
    );
  });

  test("a bad stack name is rejected", () => {
    assert.match(problems({}, "Prod_EU")[0], /stack name "Prod_EU"/);
  });
});
