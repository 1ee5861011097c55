// Test harness: the Pulumi mocks of src/mocks.ts (realistic ARNs/URLs, every registered resource
// recorded) for the "test" stack, and a runner of the program for a given stack configuration.
//
// Invariant: `deploy()` returns only after every registration has been answered, so the record
// list is complete when the tests (and the policy checks) look at it.
import * as pulumi from "@pulumi/pulumi";
import { installMocks } from "../src/mocks";
import { parseConfig } from "../src/config";
import type { StackConfig } from "../src/config";
import type { PolicyContext, ResourceRecord } from "../src/policies";
import type { Deployment } from "../src/stack";

export const REGION = "eu-west-1";
export const ACCOUNT = "123456789012";

export const SECRETS = {
  github: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:kiro/test/github-token-AbCdEf`,
  kiro: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:kiro/test/kiro-api-key-GhIjKl`,
  app: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:kiro/test/github-app-key-MnOpQr`,
};

/** A complete, valid raw configuration (strings, as `pulumi.Config.get` returns them). */
export const RAW: Record<string, string> = {
  imageTag: "0.1.0",
  vpcId: "vpc-0123456789abcdef0",
  subnetIds: JSON.stringify(["subnet-0aaa", "subnet-0bbb"]),
  githubTokenSecretArn: SECRETS.github,
  kiroApiKeySecretArn: SECRETS.kiro,
  githubAppKeySecretArn: SECRETS.app,
  githubAppId: "123456",
  githubAppInstallationId: "7654321",
  githubProject: "orgs/acme/7",
  consumerMaxTasks: "6",
  workerVersion: "0.1.0",
  workerSha256: "a".repeat(64),
  kiroCliVersion: "2.8.0",
  alarmEmail: "ops@example.com",
  consumerEnvironment: JSON.stringify({ KIRO_MAX_ATTEMPTS: "4" }),
};

export function testConfig(overrides: Record<string, string | undefined> = {}, stack = "test"): StackConfig {
  const raw: Record<string, string | undefined> = { ...RAW, ...overrides };
  return parseConfig(stack, (k) => raw[k]);
}

export function policyContext(cfg: StackConfig): PolicyContext {
  return {
    stackPrefix: `kiro-${cfg.stack}`,
    externalArns: [
      cfg.githubTokenSecretArn,
      cfg.kiroApiKeySecretArn,
      ...(cfg.githubAppKeySecretArn ? [cfg.githubAppKeySecretArn] : []),
      ...(cfg.secretsKmsKeyArn ? [cfg.secretsKmsKeyArn] : []),
    ],
    secretsKms: cfg.secretsKmsKeyArn !== undefined,
  };
}

export interface Run {
  cfg: StackConfig;
  d: Deployment;
  resources: ResourceRecord[];
}

const recorded: ResourceRecord[] = installMocks({ stack: "test", region: REGION, account: ACCOUNT });

/** Runs the program once for `cfg` (one run per test process: resources are global). */
export async function deploy(cfg: StackConfig = testConfig(), buildspecText?: string): Promise<Run> {
  const { createStack } = await import("../src/stack");
  const d = createStack(cfg, buildspecText === undefined ? {} : { buildspecText });
  await pulumi.runtime.disconnect();
  return { cfg, d, resources: recorded };
}

/** The value of an output (known under mocks). */
export function value<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply((v) => resolve(v)));
}

export function ofType(run: Run, type: string): ResourceRecord[] {
  return run.resources.filter((r) => r.type === type);
}

export function one(run: Run, type: string, name: string): ResourceRecord {
  const found = run.resources.filter((r) => r.type === type && r.name === name);
  if (found.length !== 1) throw new Error(`expected one ${type} named ${name}, found ${found.length}`);
  return found[0];
}
