// Render a stack file: run the Pulumi program for `Pulumi.<stack>.yaml` under the mocks the
// tests use (account 123456789012, moto's default; the region from `aws:region`) and print what
// AWS would receive as one JSON document on stdout (shape: src/render.ts).
//
//   cd infra-pulumi && node --import tsx scripts/render.ts Pulumi.staging.yaml
//   npm run render -- Pulumi.staging.yaml
//
// Exit status: 0 with the document on stdout; 1 when the stack configuration is invalid (each
// bad key on stderr); 2 for a bad command line or an unreadable stack file.
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, parseConfig } from "../src/config";
import { installMocks } from "../src/mocks";
import { readStackFile, renderDocument } from "../src/render";

/** moto's default account: the rehearsal creates the stack's resources there. */
export const RENDER_ACCOUNT = "123456789012";

async function main(argv: string[]): Promise<number> {
  if (argv.length !== 1 || argv[0].startsWith("-")) {
    process.stderr.write("usage: render.ts <path/to/Pulumi.<stack>.yaml>\n");
    return 2;
  }
  let file;
  try {
    file = readStackFile(argv[0]);
  } catch (e) {
    process.stderr.write(`render: ${(e as Error).message}\n`);
    return 2;
  }
  let cfg;
  try {
    cfg = parseConfig(file.stack, file.raw);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`render: ${argv[0]}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  const resources = installMocks({ stack: file.stack, region: file.region, account: RENDER_ACCOUNT });
  const { createStack } = await import("../src/stack");
  createStack(cfg);
  await pulumi.runtime.disconnect();
  const doc = renderDocument(cfg, resources, { region: file.region, account: RENDER_ACCOUNT });
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`render: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
