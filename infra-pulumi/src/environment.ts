// The environment each deployed binary starts with: the consumer and producer containers and
// the CodeBuild project that runs kiro-worker. One module, so the variables the Rust code reads
// (consumer/src/config.rs, producer/src/config.rs, worker/src/config.rs, github/src/gh/settings.rs)
// are matched in one place and the tests and the render tool read the same lists.
//
// Invariant: every setting a binary needs on AWS is here, by the exact name the binary reads;
// secrets are references (ECS `secrets`, CodeBuild `SECRETS_MANAGER` variables), never values;
// the stack's extra environment comes first so the program's own variables always win (and
// `RESERVED_ENV` rejects extra variables that would collide); the consumer's `KIRO_BUILD_TIMEOUT`
// is never set, so it leaves each build to the CodeBuild project's `buildTimeoutMinutes`, which the
// project's environment gives the worker as its `KIRO_BUILD_TIMEOUT`.
import type * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";

/** Where the consumer's ADOT collector sidecar listens (OTLP/HTTP). */
export const SIDECAR_OTLP_ENDPOINT = "http://127.0.0.1:4318";

/** The deployed resources the environment names. */
export interface EnvRefs {
  region: pulumi.Input<string>;
  queueUrl: pulumi.Input<string>;
  dlqUrl: pulumi.Input<string>;
  tableName: pulumi.Input<string>;
  projectName: pulumi.Input<string>;
}

export type Env = Record<string, pulumi.Input<string>>;

/** One ECS container secret (`valueFrom` is a Secrets Manager ARN). */
export interface ContainerSecret {
  name: string;
  valueFrom: string;
}

/** One CodeBuild project environment variable. */
export interface BuildVariable {
  name: string;
  value: pulumi.Input<string>;
  type: "PLAINTEXT" | "SECRETS_MANAGER";
}

/** The GitHub board and, when configured, the App's ids (its key is a secret, see below). */
function githubEnv(cfg: StackConfig): Env {
  return {
    KIRO_FORGE: "github",
    KIRO_GITHUB_PROJECT: cfg.githubProject,
    ...(cfg.githubAppId ? { KIRO_GITHUB_APP_ID: cfg.githubAppId } : {}),
    ...(cfg.githubAppInstallationId ? { KIRO_GITHUB_APP_INSTALLATION_ID: cfg.githubAppInstallationId } : {}),
  };
}

/** The consumer service's container (`kiro-consumer run`). */
export function consumerEnv(cfg: StackConfig, refs: EnvRefs): Env {
  return {
    ...cfg.consumerEnvironment,
    KIRO_BACKEND: "aws",
    KIRO_AWS_REGION: refs.region,
    KIRO_QUEUE_URL: refs.queueUrl,
    KIRO_DLQ_URL: refs.dlqUrl,
    KIRO_LEASE_TABLE: refs.tableName,
    KIRO_BUILD_RUNNER: "codebuild",
    KIRO_CODEBUILD_PROJECT: refs.projectName,
    ...githubEnv(cfg),
    KIRO_LOG_FORMAT: "json",
    KIRO_METRICS: "emf",
    KIRO_MAX_JOBS: String(cfg.consumerMaxJobs),
    KIRO_ITEM_AGENT_BUDGET: `${cfg.itemAgentBudgetMinutes}m`,
    // The sidecar: the consumer's own spans and OTLP metrics. Builds do not inherit it (they
    // run elsewhere); the CodeBuild project carries the builds' exporter settings.
    OTEL_EXPORTER_OTLP_ENDPOINT: SIDECAR_OTLP_ENDPOINT,
  };
}

/** The scheduled producer task (`kiro-producer --once`). */
export function producerEnv(cfg: StackConfig, refs: EnvRefs): Env {
  return {
    ...cfg.producerEnvironment,
    KIRO_BACKEND: "aws",
    KIRO_AWS_REGION: refs.region,
    KIRO_QUEUE_URL: refs.queueUrl,
    KIRO_DLQ_URL: refs.dlqUrl,
    ...githubEnv(cfg),
    KIRO_LOG_FORMAT: "json",
    KIRO_METRICS: "emf",
  };
}

/** The secrets of the consumer and producer containers, by the names the code reads. */
export function taskSecrets(cfg: StackConfig): ContainerSecret[] {
  return [
    { name: "GITHUB_TOKEN", valueFrom: cfg.githubTokenSecretArn },
    ...(cfg.githubAppKeySecretArn ? [{ name: "KIRO_GITHUB_APP_PRIVATE_KEY", valueFrom: cfg.githubAppKeySecretArn }] : []),
  ];
}

/** The builds' OpenTelemetry export: the configured collector, or off. */
export function buildTelemetryEnv(cfg: StackConfig): Env {
  return cfg.buildOtlpEndpoint
    ? { OTEL_EXPORTER_OTLP_ENDPOINT: cfg.buildOtlpEndpoint.replace(/\/$/, "") }
    : { OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" };
}

/** The CodeBuild project's environment: the tools the buildspec installs, and everything
 *  kiro-worker reads on AWS. CodeBuild sets AWS_REGION itself; GITHUB_TOKEN and KIRO_API_KEY
 *  come from the buildspec's `secrets-manager` section; the consumer adds the item's variables
 *  to every build. */
export function buildVariables(cfg: StackConfig, refs: Pick<EnvRefs, "tableName">): BuildVariable[] {
  const plain: Env = {
    ...cfg.buildEnvironment,
    KIRO_WORKER_VERSION: cfg.workerVersion,
    KIRO_WORKER_SHA256: cfg.workerSha256 ?? "",
    KIRO_WORKER_URL: cfg.workerUrl ?? "",
    KIRO_CLI_VERSION: cfg.kiroCliVersion,
    KIRO_CLI_SHA256: cfg.kiroCliSha256 ?? "",
    KIRO_CLI_URL: cfg.kiroCliUrl ?? "",
    KIRO_BACKEND: "aws",
    KIRO_LEASE_TABLE: refs.tableName,
    // The worker keeps the agent's and the tests' limits inside the project's timeout.
    KIRO_BUILD_TIMEOUT: `${cfg.buildTimeoutMinutes}m`,
    ...githubEnv(cfg),
    KIRO_TEST_CMD: cfg.testCommand,
    KIRO_COVERAGE_FORMAT: cfg.coverageFormat,
    ...(cfg.coveragePath ? { KIRO_COVERAGE_PATH: cfg.coveragePath } : {}),
    KIRO_COVERAGE_THRESHOLD: String(cfg.coverageThreshold),
    ...(cfg.junitPath ? { KIRO_JUNIT_PATH: cfg.junitPath } : {}),
    KIRO_FIX_ROUNDS: String(cfg.fixRounds),
    ...buildTelemetryEnv(cfg),
  };
  const vars: BuildVariable[] = Object.entries(plain).map(([name, value]) => ({ name, value, type: "PLAINTEXT" }));
  if (cfg.githubAppKeySecretArn) {
    vars.push({ name: "KIRO_GITHUB_APP_PRIVATE_KEY", value: cfg.githubAppKeySecretArn, type: "SECRETS_MANAGER" });
  }
  return vars;
}

/** ECS's `environment` list, sorted by name. */
export function envList(env: Env): { name: string; value: pulumi.Input<string> }[] {
  return Object.entries(env)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => ({ name, value }));
}
