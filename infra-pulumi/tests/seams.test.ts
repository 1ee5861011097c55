// The seam between the stack and the binaries: every variable the stack gives a component is
// one its code reads (by the exact name), so a renamed or misspelt variable — the class of
// GITHUB_APP_PRIVATE_KEY, which no code read — fails here instead of on the first deploy.
// The names a binary reads are collected from its Rust sources (clap `env = "…"` or
// `env = env::CONST` resolved through the named constants, the kiro-runtime argument structs it
// flattens, `std::env::var("…")`, the GitHub settings' names, the telemetry crate's OTEL_* names)
// and, for the build, from buildspec.yml's shell. The stack also runs the consumer with the
// consumer's own defaults (consumer/src/defaults.rs): its queue's visibility timeout and receive
// wait, its task's job count, and no override of the engine's timing.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { deploy, one } from "./harness";
import type { Run } from "./harness";
import { COVERAGE_FORMATS, WORKER_BUILD_LIMITS, WORKER_REPORT_ROOM_SECONDS, durationSeconds } from "../src/config";

const ROOT = path.join(__dirname, "..", "..");

function rustFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    return e.isDirectory() ? rustFiles(rel) : e.name.endsWith(".rs") ? [rel] : [];
  });
}

const source = (f: string): string => fs.readFileSync(path.join(ROOT, f), "utf8").split("#[cfg(test)]")[0];

/** Every `const NAME: &str = "VALUE"` of the crates that name variables (protocol's `env`
 *  modules, kiro-runtime, the GitHub settings' `vars`), by NAME: a flag written
 *  `env = env::FORGE` reads the value of `FORGE`. */
const CONSTS = new Map<string, Set<string>>();
for (const f of [...rustFiles("protocol/src"), ...rustFiles("runtime/src"), "github/src/gh/settings.rs"]) {
  for (const m of source(f).matchAll(/const ([A-Z][A-Z0-9_]*): &str = "([A-Z][A-Z0-9_]*)";/g)) {
    if (!CONSTS.has(m[1])) CONSTS.set(m[1], new Set());
    CONSTS.get(m[1])!.add(m[2]);
  }
}

/** kiro-runtime's argument structs: the variables each reads, and the structs it flattens. */
const RUNTIME_STRUCTS = new Map<string, { names: Set<string>; flattens: string[] }>();
for (const f of rustFiles("runtime/src")) {
  for (const m of source(f).matchAll(/pub (?:struct|enum) (\w+)[^{;]*\{([\s\S]*?)\n\}/g)) {
    RUNTIME_STRUCTS.set(m[1], { names: envNames(m[2]), flattens: flattened(m[2]) });
  }
}

/** The types of the fields a text flattens (`#[command(flatten)] field: Type`). */
function flattened(text: string): string[] {
  return [...text.matchAll(/flatten\)\]\s*(?:pub(?:\(crate\))? )?\w+: (?:Option<)?(\w+)/g)].map((m) => m[1]);
}

/** Variable names a text reads: `env = "…"` or `env = path::CONST`, `std::env::var("…")`,
 *  constants it declares, the telemetry crate's OTEL_* names. */
function envNames(text: string): Set<string> {
  const out = new Set<string>();
  for (const m of text.matchAll(/env = "([A-Z][A-Z0-9_]*)"/g)) out.add(m[1]);
  for (const m of text.matchAll(/env = (?:[a-z_]+::)*([A-Z][A-Z0-9_]*)\b/g)) for (const v of CONSTS.get(m[1]) ?? []) out.add(v);
  for (const m of text.matchAll(/var(?:_os)?\("([A-Z][A-Z0-9_]*)"\)/g)) out.add(m[1]);
  for (const m of text.matchAll(/var(?:_os)?\((?:[a-z_]+::)*([A-Z][A-Z0-9_]*)\)/g)) for (const v of CONSTS.get(m[1]) ?? []) out.add(v);
  for (const m of text.matchAll(/pub const [A-Z_]+: &str = "([A-Z][A-Z0-9_]*)";/g)) out.add(m[1]);
  for (const m of text.matchAll(/"(OTEL_[A-Z_]+)"/g)) out.add(m[1]);
  // otel_env.rs builds the per-signal names.
  if (text.includes('format!("OTEL_{}_EXPORTER"')) for (const s of ["TRACES", "METRICS"]) out.add(`OTEL_${s}_EXPORTER`);
  if (text.includes('format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT"')) for (const s of ["TRACES", "METRICS"]) out.add(`OTEL_EXPORTER_OTLP_${s}_ENDPOINT`);
  return out;
}

/** Environment variable names a set of Rust files read (unit-test modules left out), with
 *  those of the kiro-runtime argument structs they flatten (recursively). */
function namesRead(files: string[]): Set<string> {
  const out = new Set<string>();
  const pending: string[] = [];
  for (const f of files) {
    const text = source(f);
    for (const n of envNames(text)) out.add(n);
    pending.push(...flattened(text));
  }
  const seen = new Set<string>();
  while (pending.length) {
    const t = pending.pop()!;
    const s = RUNTIME_STRUCTS.get(t);
    if (!s || seen.has(t)) continue;
    seen.add(t);
    for (const n of s.names) out.add(n);
    pending.push(...s.flattens);
  }
  return out;
}

const TELEMETRY = rustFiles("telemetry/src");
const GITHUB_SETTINGS = ["github/src/gh/settings.rs"];
const READ = {
  consumer: namesRead([...rustFiles("consumer/src"), ...TELEMETRY, ...GITHUB_SETTINGS]),
  producer: namesRead([...rustFiles("producer/src"), ...TELEMETRY, ...GITHUB_SETTINGS]),
  worker: namesRead([...rustFiles("worker/src"), ...TELEMETRY, ...GITHUB_SETTINGS]),
};

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
    for (const n of ["KIRO_BUILD_RUNNER", "KIRO_MAX_JOBS", "KIRO_METRICS", "OTEL_EXPORTER_OTLP_ENDPOINT", "KIRO_FORGE", "GITHUB_TOKEN"]) {
      assert.ok(READ.consumer.has(n), n);
    }
    for (const n of ["KIRO_FORGE", "KIRO_GITHUB_PROJECT", "GITHUB_TOKEN", "KIRO_GITHUB_APP_PRIVATE_KEY"]) assert.ok(READ.producer.has(n), n);
    for (const n of ["KIRO_LEASE_TABLE", "KIRO_COVERAGE_THRESHOLD", "OTEL_TRACES_EXPORTER", "KIRO_GITHUB_APP_INSTALLATION_ID"]) assert.ok(READ.worker.has(n), n);
    assert.equal(READ.worker.has("GITHUB_APP_PRIVATE_KEY"), false);
  });

  test("producer task", () => {
    const unread = given(container("producer-task", "producer")).filter((n) => !READ.producer.has(n));
    assert.deepEqual(unread, []);
  });

  test("consumer task", () => {
    const unread = given(container("consumer-task", "consumer")).filter((n) => !READ.consumer.has(n));
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

});

describe("the stack's settings accept exactly what the worker accepts", () => {
  test("coverageFormat: the worker's CoverageFormat values (clap's kebab-case variant names)", () => {
    const text = source("worker/src/steps/coverage/mod.rs");
    const body = /pub enum CoverageFormat \{([\s\S]*?)\n\}/.exec(text)?.[1] ?? "";
    const variants = [...body.matchAll(/^\s{4}([A-Z]\w*),?$/gm)].map((m) => m[1].replace(/([a-z0-9])([A-Z])/g, "$1-$2").toLowerCase());
    assert.ok(variants.length >= 5, `variants read: ${variants}`);
    assert.deepEqual([...COVERAGE_FORMATS], variants);
  });
});

describe("the stack judges a build's time-out by the worker's own limits", () => {
  test("WORKER_BUILD_LIMITS are the worker's clap defaults, and the report room is REPORT_ROOM", () => {
    const text = source("worker/src/config.rs");
    for (const [name, def] of Object.entries(WORKER_BUILD_LIMITS)) {
      const m = new RegExp(`env = "${name}", default_value = "([^"]+)"`).exec(text);
      assert.ok(m, `${name} has no default in worker/src/config.rs`);
      assert.equal(def, m[1], name);
    }
    const room = /pub const REPORT_ROOM: Duration = Duration::from_secs\(([\d *]+)\);/.exec(source("worker/src/ranges.rs"));
    assert.ok(room, "REPORT_ROOM in worker/src/ranges.rs");
    assert.equal(WORKER_REPORT_ROOM_SECONDS, eval(room[1]));
  });

  test("durationSeconds reads what humantime writes", () => {
    assert.equal(durationSeconds("40m"), 2400);
    assert.equal(durationSeconds("1h 30m"), 5400);
    assert.equal(durationSeconds("30s"), 30);
    assert.equal(durationSeconds("2d"), 172800);
    assert.equal(durationSeconds("40"), undefined);
    assert.equal(durationSeconds("40 parsecs"), undefined);
    assert.equal(durationSeconds(""), undefined);
  });
});

/** The consumer's defaults (consumer/src/defaults.rs: `pub const NAME: type = value;`). */
function consumerDefaults(): Map<string, string> {
  const text = source("consumer/src/defaults.rs");
  return new Map([...text.matchAll(/pub const ([A-Z_]+): [^=]+= "?([^";]+)"?;/g)].map((m) => [m[1], m[2]]));
}

/** Seconds of a humantime default as the defaults file writes them ("20s", "5m", "1h"). */
function seconds(d: string | undefined): number {
  const m = /^(\d+)(s|m|h)$/.exec(d ?? "");
  assert.ok(m, `not a whole duration: ${d}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"];
}

describe("the stack runs the consumer with the consumer's own defaults", () => {
  const defaults = consumerDefaults();

  test("the collection reads the defaults file", () => {
    for (const n of ["MAX_JOBS", "RECEIVE_WAIT", "VISIBILITY", "POLL_EVERY", "LEASE_TTL"]) assert.ok(defaults.has(n), n);
  });

  test("the work queue's visibility timeout and receive wait are the consumer's", () => {
    const q = one(run, "aws:sqs/queue:Queue", "queue").inputs;
    assert.equal(q.visibilityTimeoutSeconds, seconds(defaults.get("VISIBILITY")));
    assert.equal(q.receiveWaitTimeSeconds, seconds(defaults.get("RECEIVE_WAIT")));
  });

  test("the task's job count defaults to the consumer's, and the engine's timing is left to the binary", () => {
    const env = new Map<string, string>(container("consumer-task", "consumer").environment.map((e: Any) => [e.name, e.value]));
    assert.equal(env.get("KIRO_MAX_JOBS"), defaults.get("MAX_JOBS"));
    const timing = [
      "KIRO_RECEIVE_WAIT",
      "KIRO_RECEIVE_GAP",
      "KIRO_POLL_EVERY",
      "KIRO_BOARD_EVERY",
      "KIRO_LEASE_TTL",
      "KIRO_LEASE_SKEW",
      "KIRO_VISIBILITY",
    ];
    assert.deepEqual(timing.filter((n) => env.has(n)), [], "the stack overrides the binary's defaults");
  });

  test("the item agent budget the stack renders defaults to the consumer's", () => {
    const env = new Map<string, string>(container("consumer-task", "consumer").environment.map((e: Any) => [e.name, e.value]));
    assert.equal(seconds(env.get("KIRO_ITEM_AGENT_BUDGET")), seconds(defaults.get("ITEM_AGENT_BUDGET")));
  });
});
