// The CodeBuild environment with the optional settings on: a collector for the builds, explicit
// coverage and JUnit paths, and extra build environment.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { deploy, one, testConfig } from "./harness";
import type { Run } from "./harness";

let run: Run;
before(async () => {
  run = await deploy(
    testConfig({
      buildOtlpEndpoint: "https://otel.example.com:4318/",
      coverageFormat: "cobertura",
      coveragePath: "coverage/cobertura.xml",
      junitPath: "reports/junit.xml",
      coverageThreshold: "70",
      testCommand: "make test",
      fixRounds: "5",
      buildEnvironment: JSON.stringify({ KIRO_AGENT_MODEL: "claude-sonnet-4", KIRO_REPORT_MODE: "body" }),
    }),
  );
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const vars = (): Record<string, string> =>
  Object.fromEntries(one(run, "aws:codebuild/project:Project", "worker").inputs.environment.environmentVariables.map((v: Any) => [v.name, v.value]));

describe("CodeBuild project with every option", () => {
  test("builds export to the configured collector (OTEL_EXPORTER_OTLP_ENDPOINT), exporters not turned off", () => {
    const v = vars();
    assert.equal(v.OTEL_EXPORTER_OTLP_ENDPOINT, "https://otel.example.com:4318");
    assert.equal("OTEL_TRACES_EXPORTER" in v, false);
    assert.equal("OTEL_METRICS_EXPORTER" in v, false);
  });

  test("test, coverage and JUnit settings as configured", () => {
    const v = vars();
    assert.equal(v.KIRO_TEST_CMD, "make test");
    assert.equal(v.KIRO_COVERAGE_FORMAT, "cobertura");
    assert.equal(v.KIRO_COVERAGE_PATH, "coverage/cobertura.xml");
    assert.equal(v.KIRO_COVERAGE_THRESHOLD, "70");
    assert.equal(v.KIRO_JUNIT_PATH, "reports/junit.xml");
    assert.equal(v.KIRO_FIX_ROUNDS, "5");
  });

  test("extra build environment is added", () => {
    const v = vars();
    assert.equal(v.KIRO_AGENT_MODEL, "claude-sonnet-4");
    assert.equal(v.KIRO_REPORT_MODE, "body");
  });

  test("the consumer still exports to its sidecar, not to the builds' collector", () => {
    const [consumer] = JSON.parse(one(run, "aws:ecs/taskDefinition:TaskDefinition", "consumer-task").inputs.containerDefinitions);
    const env = Object.fromEntries(consumer.environment.map((e: Any) => [e.name, e.value]));
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, "http://127.0.0.1:4318", "the sidecar, on the task's loopback");
  });
});
