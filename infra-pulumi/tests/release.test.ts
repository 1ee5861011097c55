// scripts/release-worker.sh's packaging, without a release build (a dummy binary stands in
// for kiro-worker): the archive holds exactly `kiro-worker` at its root (mode 0755, owner
// 0:0), its .sha256 is the value the stack's workerSha256 key takes, packaging is
// reproducible, and buildspec.yml's install phase accepts that archive (download, checksum,
// extract, install) and rejects a wrong checksum or another layout.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { parse } from "yaml";
import { BUILDSPEC_PATH } from "../src/stack";
import { testConfig } from "./harness";

const SCRIPT = path.join(__dirname, "..", "..", "scripts", "release-worker.sh");
const ARCHIVE = "kiro-worker-x86_64-unknown-linux-musl.tar.gz";
const EPOCH = 1_700_000_000;

interface Entry {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  type: string;
  data: Buffer;
}

/** The entries of a gzipped ustar/GNU archive, read from the headers themselves. */
function entries(archive: Buffer): Entry[] {
  const tar = zlib.gunzipSync(archive);
  const out: Entry[] = [];
  const str = (b: Buffer, from: number, len: number) => b.subarray(from, from + len).toString("latin1").replace(/\0.*$/s, "");
  const oct = (b: Buffer, from: number, len: number) => parseInt(str(b, from, len).trim() || "0", 8);
  for (let at = 0; at + 512 <= tar.length; ) {
    const h = tar.subarray(at, at + 512);
    if (h.every((x) => x === 0)) break;
    const size = oct(h, 124, 12);
    const prefix = str(h, 345, 155);
    const name = str(h, 0, 100);
    out.push({
      name: prefix ? `${prefix}/${name}` : name,
      mode: oct(h, 100, 8),
      uid: oct(h, 108, 8),
      gid: oct(h, 116, 8),
      mtime: oct(h, 136, 12),
      type: str(h, 156, 1) || "0",
      data: Buffer.from(tar.subarray(at + 512, at + 512 + size)),
    });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

const sha256 = (b: Buffer) => crypto.createHash("sha256").update(b).digest("hex");
const tmp = (what: string) => fs.mkdtempSync(path.join(os.tmpdir(), `kiro-release-${what}-`));

/** A stand-in for the musl binary: prints its version like `kiro-worker --version`. */
function dummyWorker(version = "0.1.0", mode = 0o700): string {
  const file = path.join(tmp("bin"), "kiro-worker");
  fs.writeFileSync(file, `#!/bin/sh\necho "kiro-worker ${version}"\n`, { mode });
  return file;
}

function pack(bin: string, out: string, epoch: number | string = EPOCH) {
  return spawnSync("bash", [SCRIPT, "package", bin, out], { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) }, encoding: "utf8" });
}

describe("scripts/release-worker.sh package", () => {
  test("writes one entry, kiro-worker, mode 0755, owner 0:0, at the archive root", () => {
    const bin = dummyWorker();
    const out = tmp("dist");
    const r = pack(bin, out);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(fs.readdirSync(out).sort(), [ARCHIVE, `${ARCHIVE}.sha256`]);
    const list = entries(fs.readFileSync(path.join(out, ARCHIVE)));
    assert.deepEqual(
      list.map(({ name, mode, uid, gid, mtime, type }) => ({ name, mode, uid, gid, mtime, type })),
      [{ name: "kiro-worker", mode: 0o755, uid: 0, gid: 0, mtime: EPOCH, type: "0" }],
    );
    assert.deepEqual(list[0].data, fs.readFileSync(bin));
  });

  test("the .sha256 file is the archive's digest, as the stack's workerSha256 key takes it", () => {
    const out = tmp("dist");
    const r = pack(dummyWorker(), out);
    assert.equal(r.status, 0, r.stderr);
    const text = fs.readFileSync(path.join(out, `${ARCHIVE}.sha256`), "utf8");
    const digest = sha256(fs.readFileSync(path.join(out, ARCHIVE)));
    assert.equal(text, `${digest}\n`);
    assert.equal(testConfig({ workerSha256: text.trim() }).workerSha256, digest);
    assert.match(r.stdout, new RegExp(`pulumi config set kiro-infra:workerSha256 ${digest}\\n`));
    assert.match(r.stdout, /pulumi config set kiro-infra:workerVersion 0\.1\.0\n/);
  });

  test("is reproducible: the same binary gives the same bytes whatever its file's mtime and mode", () => {
    const a = dummyWorker("0.1.0", 0o700);
    const b = dummyWorker("0.1.0", 0o755);
    fs.utimesSync(b, new Date(0), new Date(86_400_000));
    const [outA, outB] = [tmp("a"), tmp("b")];
    assert.equal(pack(a, outA).status, 0);
    assert.equal(pack(b, outB).status, 0);
    assert.deepEqual(fs.readFileSync(path.join(outA, ARCHIVE)), fs.readFileSync(path.join(outB, ARCHIVE)));
    const later = tmp("c");
    assert.equal(pack(a, later, EPOCH + 60).status, 0);
    assert.equal(entries(fs.readFileSync(path.join(later, ARCHIVE)))[0].mtime, EPOCH + 60);
  });

  test("refuses a missing or non-executable binary and a bad SOURCE_DATE_EPOCH, naming the problem", () => {
    const out = tmp("dist");
    const missing = pack(path.join(out, "nope"), out);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /release-worker: no binary at .*nope/);
    const plain = dummyWorker("0.1.0", 0o644);
    const noexec = pack(plain, out);
    assert.equal(noexec.status, 1);
    assert.match(noexec.stderr, /is not executable/);
    const epoch = pack(dummyWorker(), out, "yesterday");
    assert.equal(epoch.status, 1);
    assert.match(epoch.stderr, /SOURCE_DATE_EPOCH must be seconds since 1970, got 'yesterday'/);
    assert.deepEqual(fs.readdirSync(out), [], "nothing written");
  });
});

describe("scripts/release-worker.sh (build)", () => {
  /** A PATH with only the basic tools the script itself uses, and the given fakes. */
  function pathWith(fakes: Record<string, string>): string {
    const dir = tmp("tools");
    for (const tool of ["dirname", "grep", "head", "tail", "sed", "cat", "awk"]) {
      const found = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
      assert.ok(found, `${tool} on the test machine`);
      fs.symlinkSync(found, path.join(dir, tool));
    }
    for (const [name, body] of Object.entries(fakes)) fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return dir;
  }
  const build = (PATH: string) => spawnSync("/bin/bash", [SCRIPT], { env: { PATH, HOME: os.tmpdir() }, encoding: "utf8" });
  const cargoCalled = (dir: string) => fs.existsSync(path.join(dir, "cargo-called"));

  test("refuses to start without cargo, the musl target or musl-gcc, naming the fix", () => {
    const noCargo = build(pathWith({}));
    assert.equal(noCargo.status, 1);
    assert.match(noCargo.stderr, /release-worker: 'cargo' is required but not on PATH/);

    const cargo = 'echo called > "$(dirname "$0")/cargo-called"';
    const gnuOnly = pathWith({ cargo, rustup: 'echo x86_64-unknown-linux-gnu' });
    const noTarget = build(gnuOnly);
    assert.equal(noTarget.status, 1);
    assert.match(noTarget.stderr, /the Rust target x86_64-unknown-linux-musl is not installed: rustup target add x86_64-unknown-linux-musl/);
    assert.equal(cargoCalled(gnuOnly), false);

    const noMuslGcc = pathWith({ cargo, rustup: 'printf "x86_64-unknown-linux-gnu\\nx86_64-unknown-linux-musl\\n"' });
    const r = build(noMuslGcc);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /'musl-gcc' is required but not on PATH \(Debian\/Ubuntu: apt-get install musl-tools/);
    assert.equal(cargoCalled(noMuslGcc), false);
  });
});

describe("buildspec.yml's install phase with the packaged archive", () => {
  const install = (): string => parse(fs.readFileSync(BUILDSPEC_PATH, "utf8")).phases.install.commands[0];

  /**
   * Runs the install phase as on CodeBuild with a curl that serves `archive` and an
   * `install` that puts the binary into a directory of the test instead of /usr/local/bin
   * (the real /usr/bin/install does the work).
   */
  function installPhase(archive: string, sha: string | undefined) {
    const bin = tmp("path");
    const dest = tmp("usr-local-bin");
    const log = path.join(bin, "curl.log");
    const script = (name: string, body: string) => fs.writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    script("curl", `out=; url=\nwhile [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2;; -*) shift;; *) url=$1; shift;; esac; done\necho "$url" >> "${log}"\ncp "${archive}" "$out"`);
    script("install", `[ "$4" = /usr/local/bin/kiro-worker ] || { echo "unexpected install $*" >&2; exit 2; }\nexec /usr/bin/install "$1" "$2" "$3" "${dest}/kiro-worker"`);
    script("kiro-cli", 'echo "kiro-cli 2.8.0"');
    const env: Record<string, string> = {
      HOME: os.tmpdir(),
      PATH: `${bin}:${dest}:/usr/bin:/bin`,
      CODEBUILD_BUILD_ARN: "arn:aws:codebuild:eu-west-1:1:build/p:1",
      KIRO_WORKER_VERSION: "0.1.0",
      KIRO_CLI_VERSION: "2.8.0",
    };
    if (sha !== undefined) env.KIRO_WORKER_SHA256 = sha;
    const r = spawnSync("sh", ["-c", install()], { env, encoding: "utf8" });
    const installed = path.join(dest, "kiro-worker");
    const urls = fs.existsSync(log) ? fs.readFileSync(log, "utf8").trim().split("\n") : [];
    return { r, installed: fs.existsSync(installed) ? installed : undefined, urls };
  }

  const packaged = () => {
    const bin = dummyWorker();
    const out = tmp("dist");
    assert.equal(pack(bin, out).status, 0);
    return { bin, archive: path.join(out, ARCHIVE), sha: fs.readFileSync(path.join(out, `${ARCHIVE}.sha256`), "utf8").trim() };
  };

  test("downloads the release asset, checks the pinned digest, extracts and installs kiro-worker", () => {
    const { bin, archive, sha } = packaged();
    const { r, installed, urls } = installPhase(archive, sha);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(urls, [`https://github.com/kiro-codebuild-worker/kiro-codebuild-worker/releases/download/v0.1.0/${ARCHIVE}`]);
    assert.ok(installed, "kiro-worker was installed");
    assert.deepEqual(fs.readFileSync(installed), fs.readFileSync(bin));
    assert.equal(fs.statSync(installed).mode & 0o777, 0o755);
    assert.match(r.stdout, /kiro-worker 0\.1\.0/);
    assert.match(r.stdout, /: OK/, "sha256sum -c checked the archive");
  });

  test("a digest that is not the archive's fails the phase and installs nothing", () => {
    const { archive } = packaged();
    const { r, installed } = installPhase(archive, "0".repeat(64));
    assert.notEqual(r.status, 0);
    assert.equal(installed, undefined);
  });

  test("an archive with kiro-worker under a directory (not at the root) fails the phase", () => {
    const dir = tmp("nested");
    fs.mkdirSync(path.join(dir, "dist"));
    fs.copyFileSync(dummyWorker(), path.join(dir, "dist", "kiro-worker"));
    const archive = path.join(dir, ARCHIVE);
    const made = spawnSync("tar", ["-czf", archive, "-C", dir, "dist"], { encoding: "utf8" });
    assert.equal(made.status, 0, made.stderr);
    const { r, installed } = installPhase(archive, sha256(fs.readFileSync(archive)));
    assert.notEqual(r.status, 0);
    assert.equal(installed, undefined);
  });
});
