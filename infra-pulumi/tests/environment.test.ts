// The environment the deployed binaries start with, against the variables the Rust code reads:
// the consumer service, the scheduled producer, and the CodeBuild project that runs kiro-worker.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { REGION, SECRETS, deploy, one, value } from "./harness";
import type { Run } from "./harness";

let run: Run;
before(async () => {
  run = await deploy();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const container = (td: string, name: string): Any =>
  JSON.parse(one(run, "aws:ecs/taskDefinition:TaskDefinition", td).inputs.containerDefinitions).find((c: Any) => c.name === name);
const envOf = (c: Any): Record<string, string> => Object.fromEntries(c.environment.map((e: Any) => [e.name, e.value]));
const secretsOf = (c: Any): Record<string, string> => Object.fromEntries((c.secrets ?? []).map((s: Any) => [s.name, s.valueFrom]));

describe("consumer task", () => {
  test("runs builds on CodeBuild (KIRO_BUILD_RUNNER=codebuild, consumer/src/config.rs; the default is local)", () => {
    const env = envOf(container("consumer-task", "consumer"));
    assert.equal(env.KIRO_BUILD_RUNNER, "codebuild");
    assert.equal(env.KIRO_CODEBUILD_PROJECT, "kiro-test-worker");
    assert.equal(env.KIRO_BACKEND, "aws");
    assert.equal(env.KIRO_AWS_REGION, REGION);
  });

  test("knows the GitHub board and the App ids; the App key arrives as KIRO_GITHUB_APP_PRIVATE_KEY", () => {
    const c = container("consumer-task", "consumer");
    const env = envOf(c);
    assert.equal(env.KIRO_FORGE, "github");
    assert.equal(env.KIRO_GITHUB_PROJECT, "orgs/acme/7");
    assert.equal(env.KIRO_GITHUB_APP_ID, "123456");
    assert.equal(env.KIRO_GITHUB_APP_INSTALLATION_ID, "7654321");
    assert.deepEqual(secretsOf(c), { GITHUB_TOKEN: SECRETS.github, KIRO_GITHUB_APP_PRIVATE_KEY: SECRETS.app });
  });

  test("leaves the build timeout to the CodeBuild project: no KIRO_BUILD_TIMEOUT, the project has buildTimeoutMinutes", () => {
    const env = envOf(container("consumer-task", "consumer"));
    assert.equal("KIRO_BUILD_TIMEOUT" in env, false);
    const project = one(run, "aws:codebuild/project:Project", "worker").inputs;
    assert.equal(project.buildTimeout, run.cfg.buildTimeoutMinutes);
    // ... and tells the worker that limit, so it keeps the agent's and the tests' inside it.
    const vars = (project.environment.environmentVariables as { name: string; value: string }[]);
    assert.equal(vars.find((v) => v.name === "KIRO_BUILD_TIMEOUT")?.value, `${run.cfg.buildTimeoutMinutes}m`);
  });

  test("the stack's extra environment is added, and the program's variables win", () => {
    const env = envOf(container("consumer-task", "consumer"));
    assert.equal(env.KIRO_MAX_ATTEMPTS, "4");
  });
});

describe("producer task", () => {
  test("reads the GitHub board (KIRO_FORGE=github, KIRO_GITHUB_PROJECT) and enqueues on SQS", async () => {
    const c = container("producer-task", "producer");
    const env = envOf(c);
    assert.equal(env.KIRO_FORGE, "github");
    assert.equal(env.KIRO_GITHUB_PROJECT, "orgs/acme/7");
    assert.equal(env.KIRO_BACKEND, "aws");
    assert.equal(env.KIRO_AWS_REGION, REGION);
    assert.equal(env.KIRO_QUEUE_URL, await value(run.d.queue.url));
    assert.equal(env.KIRO_DLQ_URL, await value(run.d.dlq.url));
    assert.equal(env.KIRO_GITHUB_APP_ID, "123456");
    assert.equal(env.KIRO_GITHUB_APP_INSTALLATION_ID, "7654321");
    assert.deepEqual(secretsOf(c), { GITHUB_TOKEN: SECRETS.github, KIRO_GITHUB_APP_PRIVATE_KEY: SECRETS.app });
  });
});

describe("no container uses the old, unread App key name", () => {
  test("GITHUB_APP_PRIVATE_KEY appears nowhere", () => {
    for (const [td, name] of [["consumer-task", "consumer"], ["producer-task", "producer"]]) {
      const c = container(td, name);
      assert.equal("GITHUB_APP_PRIVATE_KEY" in secretsOf(c), false, td);
      assert.equal("GITHUB_APP_PRIVATE_KEY" in envOf(c), false, td);
    }
  });
});

describe("CodeBuild project (kiro-worker's environment)", () => {
  const vars = (): Record<string, { value: string; type: string }> =>
    Object.fromEntries(one(run, "aws:codebuild/project:Project", "worker").inputs.environment.environmentVariables.map((v: Any) => [v.name, v]));

  test("the AWS lease store and the GitHub forge (worker/src/wiring.rs needs both, or KIRO_STATE_DIR)", () => {
    const v = vars();
    assert.equal(v.KIRO_BACKEND.value, "aws");
    assert.equal(v.KIRO_LEASE_TABLE.value, "kiro-test-jobs");
    assert.equal(v.KIRO_FORGE.value, "github");
    assert.equal(v.KIRO_GITHUB_PROJECT.value, "orgs/acme/7");
    assert.equal("KIRO_STATE_DIR" in v, false);
  });

  test("the GitHub App: ids in plain text, the key as a SECRETS_MANAGER variable under the name the worker reads", () => {
    const v = vars();
    assert.deepEqual(v.KIRO_GITHUB_APP_ID, { name: "KIRO_GITHUB_APP_ID", value: "123456", type: "PLAINTEXT" });
    assert.deepEqual(v.KIRO_GITHUB_APP_INSTALLATION_ID, { name: "KIRO_GITHUB_APP_INSTALLATION_ID", value: "7654321", type: "PLAINTEXT" });
    assert.deepEqual(v.KIRO_GITHUB_APP_PRIVATE_KEY, { name: "KIRO_GITHUB_APP_PRIVATE_KEY", value: SECRETS.app, type: "SECRETS_MANAGER" });
    for (const [name, e] of Object.entries(v)) if (name !== "KIRO_GITHUB_APP_PRIVATE_KEY") assert.equal(e.type, "PLAINTEXT", name);
  });

  test("test and coverage defaults from the stack (KIRO_TEST_CMD, KIRO_COVERAGE_FORMAT, KIRO_COVERAGE_THRESHOLD, KIRO_FIX_ROUNDS)", () => {
    const v = vars();
    assert.equal(v.KIRO_TEST_CMD.value, "npm test");
    assert.equal(v.KIRO_FIX_ROUNDS.value, "2", "the worker's default, stated by the stack");
    assert.equal(v.KIRO_COVERAGE_FORMAT.value, "auto");
    assert.equal(v.KIRO_COVERAGE_THRESHOLD.value, "80");
    assert.equal("KIRO_COVERAGE_PATH" in v, false, "unset: the worker looks in the format's usual places");
    assert.equal("KIRO_JUNIT_PATH" in v, false);
  });

  test("no unread variables: the old *_SECRET_ARN names are gone; secrets stay references", () => {
    const v = vars();
    assert.equal("KIRO_GITHUB_TOKEN_SECRET_ARN" in v, false);
    assert.equal("KIRO_API_KEY_SECRET_ARN" in v, false);
    assert.equal("GITHUB_TOKEN" in v, false, "from the buildspec's secrets-manager section");
    assert.equal("KIRO_API_KEY" in v, false, "from the buildspec's secrets-manager section");
  });

  test("without buildOtlpEndpoint the builds' OTLP export is off (nothing listens where they run)", () => {
    const v = vars();
    assert.equal(v.OTEL_TRACES_EXPORTER.value, "none");
    assert.equal(v.OTEL_METRICS_EXPORTER.value, "none");
    assert.equal("OTEL_EXPORTER_OTLP_ENDPOINT" in v, false);
  });
});
