// Test harness: Pulumi mocks that answer every resource with realistic ARNs/URLs, record every
// registered resource, and run the program for a given stack configuration.
//
// Invariant: `deploy()` returns only after every registration has been answered, so the record
// list is complete when the tests (and the policy checks) look at it.
import * as pulumi from "@pulumi/pulumi";
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

const SERVICE: Record<string, string> = {
  sqs: "sqs",
  dynamodb: "dynamodb",
  ecr: "ecr",
  cloudwatch: "cloudwatch",
  ecs: "ecs",
  iam: "iam",
  codebuild: "codebuild",
  sns: "sns",
  scheduler: "scheduler",
  appautoscaling: "autoscaling",
  ec2: "ec2",
};

/** The outputs a real provider would add to a resource's inputs. */
function fakeState(type: string, name: string, inputs: Record<string, unknown>): Record<string, unknown> {
  const [, mod, kind] = /^aws:([a-z0-9]+)\/[^:]+:(.+)$/.exec(type) ?? [];
  const physical = String(inputs.name ?? inputs.family ?? name);
  const svc = SERVICE[mod ?? ""] ?? mod;
  const base = `arn:aws:${svc}:${REGION}:${ACCOUNT}`;
  const state: Record<string, unknown> = { name: physical };
  switch (type) {
    case "aws:sqs/queue:Queue":
      state.arn = `${base}:${physical}`;
      state.url = `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${physical}`;
      break;
    case "aws:dynamodb/table:Table":
      state.arn = `${base}:table/${physical}`;
      break;
    case "aws:ecr/repository:Repository":
      state.arn = `${base}:repository/${physical}`;
      state.repositoryUrl = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/${physical}`;
      break;
    case "aws:cloudwatch/logGroup:LogGroup":
      state.arn = `arn:aws:logs:${REGION}:${ACCOUNT}:log-group:${physical}`;
      break;
    case "aws:ecs/cluster:Cluster":
      state.arn = `${base}:cluster/${physical}`;
      break;
    case "aws:ecs/service:Service":
      state.arn = `${base}:service/${physical}`;
      break;
    case "aws:ecs/taskDefinition:TaskDefinition":
      state.arnWithoutRevision = `${base}:task-definition/${physical}`;
      state.arn = `${state.arnWithoutRevision}:1`;
      break;
    case "aws:iam/role:Role":
      state.arn = `arn:aws:iam::${ACCOUNT}:role/${physical}`;
      break;
    case "aws:codebuild/project:Project":
      state.arn = `${base}:project/${physical}`;
      break;
    case "aws:codebuild/reportGroup:ReportGroup":
      state.arn = `${base}:report-group/${physical}`;
      break;
    case "aws:sns/topic:Topic":
      state.arn = `${base}:${physical}`;
      break;
    case "aws:appautoscaling/policy:Policy":
      state.arn = `${base}:scalingPolicy:0000:resource/ecs/policyName/${physical}`;
      break;
    default:
      state.arn = `${base}:${(kind ?? "resource").toLowerCase()}/${physical}`;
  }
  return state;
}

export interface Run {
  cfg: StackConfig;
  d: Deployment;
  resources: ResourceRecord[];
}

const recorded: ResourceRecord[] = [];

pulumi.runtime.setMocks(
  {
    newResource(args) {
      const state = { ...args.inputs, ...fakeState(args.type, args.name, args.inputs) };
      recorded.push({ type: args.type, name: args.name, inputs: args.inputs, state });
      return { id: `${args.name}-id`, state };
    },
    call(args) {
      switch (args.token) {
        case "aws:index/getRegion:getRegion":
          return { name: REGION, region: REGION, id: REGION };
        case "aws:index/getCallerIdentity:getCallerIdentity":
          return { accountId: ACCOUNT, arn: `arn:aws:iam::${ACCOUNT}:user/test`, userId: "test" };
        default:
          throw new Error(`unexpected invoke ${args.token}`);
      }
    },
  },
  "kiro-infra",
  "test",
  false,
);

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
