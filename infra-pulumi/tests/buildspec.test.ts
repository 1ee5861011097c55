// buildspec.yml against schemas/buildspec.schema.json, the CodeBuild-only install guard, and the
// copy the program inlines into the CodeBuild project.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import Ajv from "ajv";
import { parse } from "yaml";
import { BUILDSPEC_PATH, BUILDSPEC_SECRET_PLACEHOLDERS, renderBuildspec } from "../src/stack";

const SCHEMA = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "schemas", "buildspec.schema.json"), "utf8"));
const TEXT = fs.readFileSync(BUILDSPEC_PATH, "utf8");
const validate = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true }).compile(SCHEMA);

function errors(doc: unknown): string[] {
  return validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const spec = (): Any => parse(TEXT);

describe("buildspec.yml", () => {
  test("is valid against the project's buildspec 0.2 schema", () => {
    assert.deepEqual(errors(spec()), []);
    assert.equal(spec().version, 0.2);
  });

  test("the schema rejects what CodeBuild would reject", () => {
    const cases: [string, (d: Any) => void, RegExp][] = [
      ["unknown phase", (d) => (d.phases.prebuild = { commands: ["x"] }), /^\/phases must NOT have additional properties/],
      ["unknown report format", (d) => (d.reports.junit["file-format"] = "LCOV"), /^\/reports\/junit\/file-format must be equal to one of/],
      ["bad exported variable", (d) => d.env["exported-variables"].push("KIRO-OUTCOME"), /^\/env\/exported-variables\/9 must match pattern/],
      ["missing version", (d) => delete d.version, /^\/ must have required property 'version'/],
      ["version 0.1", (d) => (d.version = 0.1), /^\/version must be equal to one of/],
      ["commands not a list", (d) => (d.phases.build.commands = "kiro-worker run"), /^\/phases\/build\/commands must be array/],
      ["bad on-failure", (d) => (d.phases.install["on-failure"] = "RETRY"), /^\/phases\/install\/on-failure must be equal to one of/],
      ["typo in env", (d) => (d.env["secret-manager"] = {}), /^\/env must NOT have additional properties/],
    ];
    for (const [name, mutate, expected] of cases) {
      const d = spec();
      mutate(d);
      const found = errors(d);
      assert.ok(found.some((e) => expected.test(e)), `${name}: ${JSON.stringify(found)}`);
    }
  });

  test("secrets come from Secrets Manager; the outcome is exported from a finally block; JUnit reports", () => {
    const d = spec();
    assert.deepEqual(d.env["secrets-manager"], {
      GITHUB_TOKEN: BUILDSPEC_SECRET_PLACEHOLDERS.githubToken,
      KIRO_API_KEY: BUILDSPEC_SECRET_PLACEHOLDERS.kiroApiKey,
    });
    assert.ok(!("GITHUB_TOKEN" in d.env.variables) && !("KIRO_API_KEY" in d.env.variables));
    assert.equal(d.env["exported-variables"].length, 9);
    assert.deepEqual(d.phases.build.commands, ["kiro-worker run"]);
    assert.match(d.phases.build.finally[0], /\. "\.\/\$KIRO_OUTCOME_FILE"/);
    assert.equal(d.reports.junit["file-format"], "JUNITXML");
    assert.equal(d.phases.install["on-failure"], "ABORT");
  });

  test("the copy inlined into the CodeBuild project differs only by the secret ARNs and stays valid", () => {
    const github = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:kiro-prod/github-token-AbCdEf";
    const kiro = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:kiro-prod/kiro-api-key-GhIjKl";
    const rendered = renderBuildspec(TEXT, { githubTokenSecretArn: github, kiroApiKeySecretArn: kiro });
    const d = parse(rendered);
    assert.deepEqual(errors(d), []);
    assert.deepEqual(d.env["secrets-manager"], { GITHUB_TOKEN: github, KIRO_API_KEY: kiro });
    const changed = rendered.split("\n").filter((l, i) => l !== TEXT.split("\n")[i]);
    assert.equal(changed.length, 2);
    assert.throws(() => renderBuildspec("version: 0.2\n", { githubTokenSecretArn: github, kiroApiKeySecretArn: kiro }), /no secrets-manager entry/);
  });

  test("every command is valid POSIX sh", () => {
    const d = spec();
    const commands = Object.values(d.phases as Record<string, Any>).flatMap((p) => [...(p.commands ?? []), ...(p.finally ?? [])]);
    assert.ok(commands.length >= 4);
    for (const c of commands) execFileSync("sh", ["-n", "-c", c]);
  });
});

describe("the install phase", () => {
  const install = (): string => spec().phases.install.commands[0];
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), "kiro-buildspec-"));
  const fake = (name: string, script: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  // A PATH with no kiro tools and a curl that records being called.
  const onlySystem = fs.mkdtempSync(path.join(os.tmpdir(), "kiro-buildspec-sys-"));
  fs.writeFileSync(path.join(onlySystem, "curl"), `#!/bin/sh\necho called > "${onlySystem}/curl-called"\nexit 22\n`, { mode: 0o755 });
  const run = (env: Record<string, string>) =>
    spawnSync("sh", ["-c", install()], { env: { HOME: os.tmpdir(), ...env }, encoding: "utf8" });

  test("does nothing outside CodeBuild (the local runner has no CODEBUILD_BUILD_ARN)", () => {
    const r = run({ PATH: `${onlySystem}:/usr/bin:/bin` });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(fs.existsSync(path.join(onlySystem, "curl-called")), false);
  });

  test("on CodeBuild, fetches a missing tool (here: the download fails and so does the phase)", () => {
    const r = run({ PATH: `${onlySystem}:/usr/bin:/bin`, CODEBUILD_BUILD_ARN: "arn:aws:codebuild:eu-west-1:1:build/p:1", KIRO_WORKER_VERSION: "0.1.0", KIRO_CLI_VERSION: "2.8.0" });
    assert.notEqual(r.status, 0);
    assert.equal(fs.existsSync(path.join(onlySystem, "curl-called")), true);
  });

  test("on CodeBuild, keeps tools the image has and checks the pinned kiro-cli version", () => {
    fake("kiro-worker", 'echo "kiro-worker 0.1.0"');
    fake("kiro-cli", 'echo "kiro-cli 2.8.0"');
    const env = { PATH: `${bin}:/usr/bin:/bin`, CODEBUILD_BUILD_ARN: "arn:aws:codebuild:eu-west-1:1:build/p:1", KIRO_CLI_VERSION: "2.8.0" };
    const ok = run(env);
    assert.equal(ok.status, 0, ok.stderr);
    const mismatch = run({ ...env, KIRO_CLI_VERSION: "2.9.0" });
    assert.notEqual(mismatch.status, 0, "a kiro-cli of another version fails INSTALL");
  });
});
