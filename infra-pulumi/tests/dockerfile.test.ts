// Dockerfile.consumer, statically (no Docker daemon here): the final stage has no shell, runs
// as a non-root user, and starts the binaries in exec form; the builder makes static musl
// release binaries of both programs.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  alias?: string;
  body: Instruction[];
}

/** Instructions grouped by stage (comments dropped, `\` continuations joined). */
export function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue;
    if (line.endsWith("\\")) {
      current += line.slice(0, -1) + " ";
      continue;
    }
    logical.push((current + line).trim());
    current = "";
  }
  if (current.trim()) logical.push(current.trim());
  const stages: Stage[] = [];
  for (const l of logical) {
    const [, op, args] = /^(\S+)\s*(.*)$/.exec(l) ?? [];
    const inst = { op: op.toUpperCase(), args };
    if (inst.op === "FROM") {
      const [, from, alias] = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ from, alias, body: [] });
    } else if (stages.length === 0) {
      if (inst.op !== "ARG") throw new Error(`${inst.op} before the first FROM`);
    } else {
      stages[stages.length - 1].body.push(inst);
    }
  }
  return stages;
}

/** Shell-less bases: `scratch` and the distroless static/base images (the `:debug` variants carry busybox). */
const SHELL_LESS = /^(scratch|gcr\.io\/distroless\/(static|base|cc)(-debian\d+)?(:(?!debug)[\w.-]+)?(@sha256:[0-9a-f]{64})?)$/;

const execForm = (args: string): string[] | undefined => {
  try {
    const v = JSON.parse(args);
    return Array.isArray(v) && v.every((s) => typeof s === "string") ? v : undefined;
  } catch {
    return undefined;
  }
};

/** Every reason the final stage could start a shell or run as root. */
export function finalStageProblems(text: string): string[] {
  const stages = parseDockerfile(text);
  const out: string[] = [];
  const final = stages[stages.length - 1];
  if (!final) return ["no FROM"];
  if (!SHELL_LESS.test(final.from)) out.push(`final base ${final.from} may contain a shell`);
  for (const i of final.body) {
    if (i.op === "RUN" || i.op === "SHELL") out.push(`${i.op} in the final stage needs a shell`);
    if (i.op === "CMD" || i.op === "ENTRYPOINT") {
      if (!execForm(i.args)) out.push(`${i.op} is in shell form: ${i.args}`);
    }
    if (i.op === "HEALTHCHECK") {
      const m = /^(?:--\S+\s+)*CMD\s+(.*)$/.exec(i.args);
      if (!m || !execForm(m[1])) out.push(`HEALTHCHECK is not an exec-form CMD: ${i.args}`);
    }
  }
  const users = final.body.filter((i) => i.op === "USER");
  const user = users[users.length - 1]?.args;
  if (!user) out.push("no USER in the final stage (runs as root)");
  else if (/^(root|0)(:.*)?$/.test(user)) out.push(`USER ${user} is root`);
  if (!final.body.some((i) => i.op === "ENTRYPOINT")) out.push("no ENTRYPOINT");
  return out;
}

const TEXT = fs.readFileSync(path.join(__dirname, "..", "..", "Dockerfile.consumer"), "utf8");

describe("Dockerfile.consumer", () => {
  const stages = parseDockerfile(TEXT);
  const final = stages[stages.length - 1];
  const get = (op: string) => final.body.filter((i) => i.op === op).map((i) => i.args);

  test("the final stage has no shell and runs as a non-root user", () => {
    assert.deepEqual(finalStageProblems(TEXT), []);
    assert.equal(final.from, "gcr.io/distroless/static-debian12:nonroot");
    assert.deepEqual(get("USER"), ["65532:65532"]);
  });

  test("entrypoint, command and health check are the consumer binary in exec form", () => {
    assert.deepEqual(get("ENTRYPOINT").map(execForm), [["/kiro-consumer"]]);
    assert.deepEqual(get("CMD").map(execForm), [["run"]]);
    const [health] = get("HEALTHCHECK");
    assert.match(health, /CMD \["\/kiro-consumer", "health"\]$/);
  });

  test("both binaries come from a static musl release build", () => {
    assert.equal(stages.length, 2);
    const [build] = stages;
    assert.match(build.from, /^rust:1\.95/);
    assert.equal(build.alias, "build");
    const run = build.body.filter((i) => i.op === "RUN").map((i) => i.args).join("\n");
    assert.match(run, /cargo build --release --locked --target x86_64-unknown-linux-musl -p kiro-consumer -p kiro-producer/);
    assert.match(run, /rustup target add x86_64-unknown-linux-musl/);
    assert.deepEqual(get("COPY"), ["--from=build /out/kiro-consumer /out/kiro-producer /"]);
  });

  test("the build context (.dockerignore) keeps every workspace member the build needs", () => {
    const root = path.join(__dirname, "..", "..");
    const cargo = fs.readFileSync(path.join(root, "Cargo.toml"), "utf8");
    const members = JSON.parse(cargo.match(/^members = (\[.*\])$/m)![1].replace(/,\s*\]/, "]")) as string[];
    assert.ok(members.length > 5, `members read from Cargo.toml: ${members}`);
    const kept = fs
      .readFileSync(path.join(root, ".dockerignore"), "utf8")
      .split("\n")
      .filter((l) => l.startsWith("!"))
      .map((l) => l.slice(1).replace(/\/$/, ""));
    // A member missing from the context fails `cargo build --locked` inside the image.
    assert.deepEqual(members.filter((m) => !kept.includes(m)), []);
  });

  test("the checker finds a shell, a root user and shell-form commands in a bad Dockerfile", () => {
    const bad = [
      "FROM rust:1.95 AS build",
      "RUN cargo build",
      "FROM debian:bookworm-slim",
      "RUN apt-get update \\",
      "    && apt-get install -y curl",
      "COPY --from=build /x /x",
      "USER root",
      "HEALTHCHECK CMD /x health || exit 1",
      "ENTRYPOINT /x run",
    ].join("\n");
    const problems = finalStageProblems(bad);
    assert.deepEqual(problems, [
      "final base debian:bookworm-slim may contain a shell",
      "RUN in the final stage needs a shell",
      "HEALTHCHECK is not an exec-form CMD: CMD /x health || exit 1",
      "ENTRYPOINT is in shell form: /x run",
      "USER root is root",
    ]);
    assert.deepEqual(finalStageProblems("FROM scratch\nCOPY x /x\nENTRYPOINT [\"/x\"]"), ["no USER in the final stage (runs as root)"]);
    assert.deepEqual(finalStageProblems("FROM gcr.io/distroless/static-debian12:debug-nonroot\nUSER 1000\nENTRYPOINT [\"/x\"]"), [
      "final base gcr.io/distroless/static-debian12:debug-nonroot may contain a shell",
    ]);
  });
});
