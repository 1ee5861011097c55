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
    const cfg = testConfig({
      consumerMaxTasks: undefined,
      alarmEmail: undefined,
      githubAppKeySecretArn: undefined,
      githubAppId: undefined,
      githubAppInstallationId: undefined,
    });
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
    assert.equal(cfg.githubAppKeySecretArn, undefined);
    assert.equal(cfg.testCommand, "npm test");
    assert.equal(cfg.coverageFormat, "auto");
    assert.equal(cfg.coverageThreshold, 80);
    assert.equal(cfg.coveragePath, undefined);
    assert.equal(cfg.junitPath, undefined);
    assert.equal(cfg.fixRounds, 2);
    assert.equal(cfg.buildOtlpEndpoint, undefined);
    assert.equal(cfg.secretsKmsKeyArn, undefined);
    assert.deepEqual(cfg.buildEnvironment, {});
  });

  test("a GitHub App needs its key, id and installation id together", () => {
    assert.deepEqual(problems({ githubAppId: undefined, githubAppInstallationId: undefined }), [
      "kiro-infra:githubAppId is required when kiro-infra:githubAppKeySecretArn is set (a GitHub App needs its key, id and installation id)",
      "kiro-infra:githubAppInstallationId is required when kiro-infra:githubAppKeySecretArn is set (a GitHub App needs its key, id and installation id)",
    ]);
    assert.match(problems({ githubAppKeySecretArn: undefined })[0], /^kiro-infra:githubAppKeySecretArn is required when kiro-infra:githubAppId and kiro-infra:githubAppInstallationId are set/);
    assert.match(problems({ githubAppInstallationId: "12ab" })[0], /^kiro-infra:githubAppInstallationId must be the App installation's numeric id/);
  });

  test("the GitHub project is required, in a form ProjectRef::parse accepts", () => {
    assert.match(problems({ githubProject: undefined })[0], /^kiro-infra:githubProject is required/);
    for (const bad of ["acme/7", "orgs/acme", "teams/acme/7", "orgs/acme/seven", "orgs/ac me/7"]) {
      assert.match(problems({ githubProject: bad })[0] ?? "", /^kiro-infra:githubProject must be/, bad);
    }
    for (const good of ["orgs/acme/7", "users/octocat/12", "https://github.com/orgs/acme/projects/7", "https://github.com/users/octo-cat/projects/3/"]) {
      assert.equal(testConfig({ githubProject: good }).githubProject, good);
    }
  });

  test("test and coverage settings: the worker's coverage formats, a threshold in percent, relative paths", () => {
    assert.match(problems({ coverageFormat: "sonar" })[0], /^kiro-infra:coverageFormat must be one of auto, lcov, cobertura, istanbul, llvm-cov, clover, istanbul-final, coverage-py, go, jacoco/);
    assert.equal(testConfig({ coverageFormat: "jacoco" }).coverageFormat, "jacoco");
    assert.match(problems({ coverageThreshold: "101" })[0], /^kiro-infra:coverageThreshold must be between 0 and 100/);
    assert.match(problems({ coveragePath: "/etc/passwd" })[0], /^kiro-infra:coveragePath must be a path relative to the checkout/);
    assert.match(problems({ junitPath: "../x.xml" })[0], /^kiro-infra:junitPath must be a path relative to the checkout/);
    assert.match(problems({ fixRounds: "11" })[0], /^kiro-infra:fixRounds must be between 0 and 10/);
    assert.equal(testConfig({ fixRounds: "0" }).fixRounds, 0);
    const cfg = testConfig({ coverageFormat: "llvm-cov", coveragePath: "target/cov.json", coverageThreshold: "65", testCommand: "cargo llvm-cov --json" });
    assert.deepEqual([cfg.coverageFormat, cfg.coveragePath, cfg.coverageThreshold, cfg.testCommand], ["llvm-cov", "target/cov.json", 65, "cargo llvm-cov --json"]);
  });

  test("extra environment may not set the program's variables, KIRO_BUILD_TIMEOUT or CodeBuild's own", () => {
    const found = problems({
      consumerEnvironment: JSON.stringify({ KIRO_BUILD_TIMEOUT: "30m", KIRO_BUILD_RUNNER: "local" }),
      producerEnvironment: JSON.stringify({ KIRO_FORGE: "embedded" }),
      buildEnvironment: JSON.stringify({ KIRO_BACKEND: "embedded", CODEBUILD_BUILD_ID: "x", KIRO_AGENT_MODEL: "m" }),
    });
    assert.deepEqual(found.map((p) => p.split(" ")[0].replace(/:$/, "")).sort(), [
      "kiro-infra:buildEnvironment.CODEBUILD_BUILD_ID",
      "kiro-infra:buildEnvironment.KIRO_BACKEND",
      "kiro-infra:consumerEnvironment.KIRO_BUILD_RUNNER",
      "kiro-infra:consumerEnvironment.KIRO_BUILD_TIMEOUT",
      "kiro-infra:producerEnvironment.KIRO_FORGE",
    ]);
  });

  test("the build's OTLP endpoint is an http(s) URL; the KMS key an ARN", () => {
    assert.match(problems({ buildOtlpEndpoint: "collector:4318" })[0], /^kiro-infra:buildOtlpEndpoint must be an http\(s\) URL/);
    assert.equal(testConfig({ buildOtlpEndpoint: "https://otel.example.com:4318" }).buildOtlpEndpoint, "https://otel.example.com:4318");
    assert.match(problems({ secretsKmsKeyArn: "alias/kiro" })[0], /^kiro-infra:secretsKmsKeyArn must be a KMS key ARN/);
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
      // Everything a working deploy needs is in the example (not left to defaults).
      for (const k of ["githubProject", "testCommand", "coverageFormat", "coverageThreshold"]) {
        assert.ok(values[`${PROJECT}:${k}`] !== undefined, `${stack}: ${k} is missing`);
      }
      if (stack !== "test") {
        for (const k of ["githubAppKeySecretArn", "githubAppId", "githubAppInstallationId", "buildOtlpEndpoint"]) {
          assert.ok(values[`${PROJECT}:${k}`] !== undefined, `${stack}: ${k} is missing`);
        }
      }
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

  test("a build time-out too short for the worker's limits is refused at preview, naming both", () => {
    // The worker's defaults need 58.5 minutes (preflight 30s + agent 40m + tests 10m + fence wait 3m + 5m).
    assert.equal(testConfig({ buildTimeoutMinutes: "59" }).buildTimeoutMinutes, 59);
    const [p, ...rest] = problems({ buildTimeoutMinutes: "30" });
    assert.deepEqual(rest, []);
    assert.match(p, /^kiro-infra:buildTimeoutMinutes \(30\) leaves kiro-worker no time to report: .*KIRO_AGENT_TIMEOUT 40m.* need 59 minutes/);
    assert.match(p, /kiro-infra:buildEnvironment/);
    // Lower limits in the build's environment make a short build fine.
    const short = JSON.stringify({ KIRO_AGENT_TIMEOUT: "15m", KIRO_TEST_TIMEOUT: "5m", KIRO_FENCE_WAIT: "2m" });
    assert.equal(testConfig({ buildTimeoutMinutes: "30", buildEnvironment: short }).buildTimeoutMinutes, 30);
    assert.match(problems({ buildTimeoutMinutes: "30", buildEnvironment: JSON.stringify({ KIRO_AGENT_TIMEOUT: "1h 10m" }) })[0], /KIRO_AGENT_TIMEOUT 1h 10m/);
    // A value the stack cannot read is left to the worker, which names it.
    assert.equal(testConfig({ buildTimeoutMinutes: "30", buildEnvironment: JSON.stringify({ KIRO_AGENT_TIMEOUT: "forever" }) }).buildTimeoutMinutes, 30);
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
