// The README's "Deploying to AWS" section against the code: every stack key the program reads
// is documented (and nothing else), the board's Status options are the names the code uses, and
// the steps come in an order that works on a first deploy.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parseConfig } from "../src/config";
import { RAW } from "./harness";

const ROOT = path.join(__dirname, "..", "..");
const README = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
const SECTION = README.split("\n## Deploying to AWS\n")[1]?.split("\n## ")[0] ?? "";
const at = (needle: string) => {
  const i = SECTION.indexOf(needle);
  assert.ok(i >= 0, `the deployment section mentions ${needle}`);
  return i;
};

describe("README: Deploying to AWS", () => {
  test("the configuration table lists exactly the keys the program reads", () => {
    const read = new Set<string>();
    parseConfig("test", (k) => {
      read.add(k);
      return RAW[k];
    });
    const table = SECTION.split("| key | default | meaning |")[1]?.split("\n\n")[0] ?? "";
    const documented = new Set<string>();
    for (const line of table.split("\n")) {
      const first = line.split("|")[1] ?? "";
      for (const m of first.matchAll(/`([A-Za-z0-9]+)`/g)) documented.add(m[1]);
    }
    assert.deepEqual([...documented].sort(), [...read].sort());
  });

  test("the board's Status options are the names the code uses (protocol ItemStatus::default_name), and the note field", () => {
    const board = fs.readFileSync(path.join(ROOT, "protocol", "src", "ports", "board.rs"), "utf8");
    const names = [...board.matchAll(/ItemStatus::\w+ => "([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(names, ["For Implementation", "Queued", "In Progress", "Done", "Failed"]);
    for (const n of names) assert.ok(SECTION.includes(`**\`${n}\`**`), n);
    const fields = fs.readFileSync(path.join(ROOT, "github", "src", "gh", "board", "config.rs"), "utf8");
    const note = /note_field: "([^"]+)"\.into\(\)/.exec(fields)?.[1];
    assert.equal(note, "Kiro note");
    assert.ok(SECTION.includes(`**\`${note}\`**`));
    assert.ok(SECTION.includes("**`Status`**"));
  });

  test("secrets before any pulumi up; the repository, then the image, then the full pulumi up", () => {
    const secrets = at("aws secretsmanager create-secret");
    const targeted = at("up --target \"urn:pulumi:$STACK::kiro-infra::aws:ecr/repository:Repository::consumer-image\"");
    const imageTag = at("config set imageTag");
    const build = at("docker build --platform linux/amd64 -f Dockerfile.consumer");
    const push = at("docker push");
    const worker = at("scripts/release-worker.sh");
    const full = at("pulumi -C infra-pulumi preview && pulumi -C infra-pulumi up");
    assert.ok(secrets < targeted && imageTag < targeted && targeted < build && build < push && push < full && worker < full);
    assert.equal(/run `?pulumi up`? again/i.test(SECTION), false, "no 'run pulumi up again' (it changes nothing)");
  });

  test("the worker tarball, its checksum and the keys that pin it", () => {
    for (const s of ["dist/kiro-worker-x86_64-unknown-linux-musl.tar.gz", ".sha256", "config set workerUrl", "config set workerSha256"]) at(s);
  });

  test("the laptop's environment for jobs / dlq, and the operator's IAM", () => {
    for (const s of ["KIRO_BACKEND=aws", "KIRO_AWS_REGION=", "KIRO_QUEUE_URL=", "KIRO_DLQ_URL=", "KIRO_LEASE_TABLE=", "kiro-consumer jobs", "kiro-consumer dlq list", "docs/iam.md", "dynamodb:Scan"]) at(s);
  });

  test("the render command in the README is the npm script", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "infra-pulumi", "package.json"), "utf8"));
    assert.equal(pkg.scripts.render, "node --import tsx scripts/render.ts");
    at("npm --prefix infra-pulumi run render -- Pulumi.$STACK.yaml");
  });
});
