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
    assert.equal(one(run, "aws:codebuild/project:Project", "worker").inputs.buildTimeout, run.cfg.buildTimeoutMinutes);
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
