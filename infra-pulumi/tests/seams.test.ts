// The seam between the stack and the binaries: every variable the stack gives a component is
// one its code reads (by the exact name), so a renamed or misspelt variable — the class of
// GITHUB_APP_PRIVATE_KEY, which no code read — fails here instead of on the first deploy.
// The names a binary reads are collected from its Rust sources (clap `env = "…"`,
// `std::env::var("…")`, the GitHub settings' names, the telemetry crate's OTEL_* names) and,
// for the build, from buildspec.yml's shell.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { deploy, one } from "./harness";
import type { Run } from "./harness";

const ROOT = path.join(__dirname, "..", "..");

function rustFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    return e.isDirectory() ? rustFiles(rel) : e.name.endsWith(".rs") ? [rel] : [];
  });
}

/** Environment variable names a set of Rust files read (unit-test modules left out). */
function namesRead(files: string[]): Set<string> {
  const out = new Set<string>();
  for (const f of files) {
    const text = fs.readFileSync(path.join(ROOT, f), "utf8").split("#[cfg(test)]")[0];
    for (const m of text.matchAll(/env = "([A-Z][A-Z0-9_]*)"/g)) out.add(m[1]);
    for (const m of text.matchAll(/var(?:_os)?\("([A-Z][A-Z0-9_]*)"\)/g)) out.add(m[1]);
    for (const m of text.matchAll(/pub const [A-Z_]+: &str = "([A-Z][A-Z0-9_]*)";/g)) out.add(m[1]);
    for (const m of text.matchAll(/"(OTEL_[A-Z_]+)"/g)) out.add(m[1]);
    // otel_env.rs builds the per-signal names.
    if (text.includes('format!("OTEL_{}_EXPORTER"')) for (const s of ["TRACES", "METRICS"]) out.add(`OTEL_${s}_EXPORTER`);
    if (text.includes('format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT"')) for (const s of ["TRACES", "METRICS"]) out.add(`OTEL_EXPORTER_OTLP_${s}_ENDPOINT`);
  }
  return out;
}

const TELEMETRY = rustFiles("telemetry/src");
const GITHUB_SETTINGS = ["github/src/gh/settings.rs"];
const READ = {
  consumer: namesRead([...rustFiles("consumer/src"), ...TELEMETRY]),
  producer: namesRead([...rustFiles("producer/src"), ...TELEMETRY, ...GITHUB_SETTINGS]),
  worker: namesRead([...rustFiles("worker/src"), ...TELEMETRY, ...GITHUB_SETTINGS]),
};

/** Variables the stack gives the consumer for a code path it does not have yet: marking GitHub
 *  board items on dead-letter (issue 10, consumer side). The last test fails as soon as the
 *  consumer reads one of them, so this list can only shrink. */
const CONSUMER_PENDING = [
  "GITHUB_TOKEN",
  "KIRO_FORGE",
  "KIRO_GITHUB_APP_ID",
  "KIRO_GITHUB_APP_INSTALLATION_ID",
  "KIRO_GITHUB_APP_PRIVATE_KEY",
  "KIRO_GITHUB_PROJECT",
];

let run: Run;
before(async () => {
  run = await deploy();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
const container = (td: string, name: string): Any =>
  JSON.parse(one(run, "aws:ecs/taskDefinition:TaskDefinition", td).inputs.containerDefinitions).find((c: Any) => c.name === name);
const given = (c: Any): string[] => [...c.environment, ...(c.secrets ?? [])].map((e: Any) => e.name).sort();

describe("every variable the stack sets is read by the binary it is set for", () => {
  test("the collection itself finds the names each binary is known to read", () => {
    for (const n of ["KIRO_BUILD_RUNNER", "KIRO_MAX_JOBS", "KIRO_METRICS", "OTEL_EXPORTER_OTLP_ENDPOINT"]) assert.ok(READ.consumer.has(n), n);
    for (const n of ["KIRO_FORGE", "KIRO_GITHUB_PROJECT", "GITHUB_TOKEN", "KIRO_GITHUB_APP_PRIVATE_KEY"]) assert.ok(READ.producer.has(n), n);
    for (const n of ["KIRO_LEASE_TABLE", "KIRO_COVERAGE_THRESHOLD", "OTEL_TRACES_EXPORTER", "KIRO_GITHUB_APP_INSTALLATION_ID"]) assert.ok(READ.worker.has(n), n);
    assert.equal(READ.worker.has("GITHUB_APP_PRIVATE_KEY"), false);
  });

  test("producer task", () => {
    const unread = given(container("producer-task", "producer")).filter((n) => !READ.producer.has(n));
    assert.deepEqual(unread, []);
  });

  test("consumer task (but the GitHub settings its dead-letter path will read)", () => {
    const unread = given(container("consumer-task", "consumer")).filter((n) => !READ.consumer.has(n) && !CONSUMER_PENDING.includes(n));
    assert.deepEqual(unread, []);
  });

  test("CodeBuild project: read by kiro-worker or by buildspec.yml's shell", () => {
    const buildspec = fs.readFileSync(path.join(ROOT, "buildspec.yml"), "utf8");
    const vars: Any[] = one(run, "aws:codebuild/project:Project", "worker").inputs.environment.environmentVariables;
    const unread = vars
      .map((v) => v.name as string)
      .filter((n) => !READ.worker.has(n) && !buildspec.includes(`$${n}`) && !buildspec.includes(`\${${n}`));
    assert.deepEqual(unread, []);
  });

  test("the consumer's pending list only holds names the consumer does not read yet", () => {
    const readNow = CONSUMER_PENDING.filter((n) => READ.consumer.has(n));
    assert.deepEqual(readNow, [], "the consumer reads these now: remove them from CONSUMER_PENDING");
  });
});
