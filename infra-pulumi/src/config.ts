// Stack configuration: the typed settings of one stack (test, staging, production), their
// defaults, and their validation.
//
// Invariant: `parseConfig` either returns a complete, valid `StackConfig` or throws one
// `ConfigError` that names every bad key (`kiro-infra:<key>`) and says what is expected, so a
// `pulumi up` with a broken stack file stops before it creates anything.

/** The Pulumi project name; config keys are `kiro-infra:<key>`. */
export const PROJECT = "kiro-infra";

/** CloudWatch Logs accepts only these retention periods (days). */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
  3653,
] as const;

export interface StackConfig {
  /** Stack name; every resource name starts with `kiro-<stack>`. */
  stack: string;
  /** Tag of the consumer image in the stack's ECR repository (immutable tags; never `latest`). */
  imageTag: string;
  /** VPC and private subnets the Fargate tasks run in (they need outbound HTTPS). */
  vpcId: string;
  subnetIds: string[];
  /** Give the tasks public IPs (only for subnets without a NAT gateway). */
  assignPublicIp: boolean;
  /** Secrets Manager ARNs (created by the operator, see the README). */
  githubTokenSecretArn: string;
  kiroApiKeySecretArn: string;
  /** Optional GitHub App (check runs, installation tokens): the private key (PEM) secret, the
   *  App id and the installation id — all three or none (the binaries prefer the App over the
   *  token when any `KIRO_GITHUB_APP_*` is set, and reject a partial App configuration). */
  githubAppKeySecretArn?: string;
  githubAppId?: string;
  githubAppInstallationId?: string;
  /** The GitHub Projects (v2) board: `orgs/<owner>/<number>`, `users/<owner>/<number>` or its URL. */
  githubProject: string;
  /** Optional customer-managed KMS key the secrets are encrypted with (grants `kms:Decrypt`
   *  through Secrets Manager to every role that reads a secret). */
  secretsKmsKeyArn?: string;
  /** Consumer service scaling. */
  consumerMinTasks: number;
  consumerMaxTasks: number;
  backlogPerTaskTarget: number;
  consumerMaxJobs: number;
  /** Agent minutes one item may use across its attempts (`KIRO_ITEM_AGENT_BUDGET`). */
  itemAgentBudgetMinutes: number;
  consumerCpu: number;
  consumerMemory: number;
  /** EventBridge Scheduler expression for the producer (`rate(...)` or `cron(...)`). */
  producerSchedule: string;
  /** CodeBuild project settings. */
  buildTimeoutMinutes: number;
  queuedTimeoutMinutes: number;
  concurrentBuildLimit: number;
  buildComputeType: string;
  buildImage: string;
  /** Pinned tools the buildspec installs on CodeBuild. */
  workerVersion: string;
  workerSha256?: string;
  workerUrl?: string;
  kiroCliVersion: string;
  kiroCliSha256?: string;
  kiroCliUrl?: string;
  /** The worker's test and coverage settings for every build (KIRO_TEST_CMD,
   *  KIRO_COVERAGE_FORMAT, KIRO_COVERAGE_PATH, KIRO_COVERAGE_THRESHOLD, KIRO_JUNIT_PATH). */
  testCommand: string;
  coverageFormat: string;
  coveragePath?: string;
  coverageThreshold: number;
  junitPath?: string;
  /** How many times the worker prompts the agent again with a failure brief when the tests
   *  fail or coverage is short (KIRO_FIX_ROUNDS, 0 to 10). */
  fixRounds: number;
  /** OTLP/HTTP endpoint of a collector the builds can reach; unset turns the builds' OTLP
   *  export off (OTEL_TRACES_EXPORTER=none, OTEL_METRICS_EXPORTER=none). */
  buildOtlpEndpoint?: string;
  /** ADOT collector image (pinned tag). */
  otelCollectorImage: string;
  logRetentionDays: number;
  /** DynamoDB deletion protection (keep it on for production). */
  deletionProtection: boolean;
  /** Optional e-mail subscription on the alarm topic. */
  alarmEmail?: string;
  /** Extra plain (non-secret) environment for the consumer and the producer containers and
   *  the CodeBuild project (the worker). */
  consumerEnvironment: Record<string, string>;
  producerEnvironment: Record<string, string>;
  buildEnvironment: Record<string, string>;
}

/** Every problem found in one stack configuration, each naming its key. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid stack configuration:\n  - ${problems.join("\n  - ")}`);
    this.name = "ConfigError";
  }
}

/** A raw configuration source: the value of `kiro-infra:<key>` as Pulumi stores it (strings or
 *  already-parsed YAML values), or undefined. */
export type RawConfig = (key: string) => unknown;

const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
const SHA256 = /^[0-9a-f]{64}$/;
const VERSION = /^v?\d+\.\d+\.\d+([.-][0-9A-Za-z.-]+)?$/;
const SCHEDULE = /^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\)|at\(.+\))$/;
const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
/** What `ProjectRef::parse` (github/src/gh/board.rs) accepts. */
const GITHUB_PROJECT = /^(https:\/\/github\.com\/)?(orgs?|users?)\/[A-Za-z0-9_-]+\/(projects\/)?\d+\/?$/;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;
/** `CoverageFormat` of kiro-worker (worker/src/steps/coverage.rs). */
export const COVERAGE_FORMATS = ["auto", "lcov", "cobertura", "istanbul", "llvm-cov", "clover", "istanbul-final", "coverage-py", "go", "jacoco"] as const;

/** kiro-worker's limits that must fit inside a build, with its defaults (worker/src/config.rs);
 *  `buildEnvironment` may override them. */
export const WORKER_BUILD_LIMITS = {
  KIRO_AGENT_PREFLIGHT_TIMEOUT: "30s",
  KIRO_AGENT_TIMEOUT: "40m",
  KIRO_TEST_TIMEOUT: "10m",
  KIRO_FENCE_WAIT: "3m",
} as const;
/** What the worker keeps inside the build for checkout, push and report (`REPORT_ROOM`,
 *  worker/src/ranges.rs), in seconds. */
export const WORKER_REPORT_ROOM_SECONDS = 300;

/** Seconds of a duration as humantime writes the common ones ("40m", "1h 30m", "90s"), or
 *  `undefined` for anything else (the worker then judges it itself). */
export function durationSeconds(raw: string): number | undefined {
  const unit: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600, hr: 3600, d: 86400 };
  const text = raw.trim();
  if (!/^(\d+\s*[a-z]+\s*)+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n, u] of text.matchAll(/(\d+)\s*([a-z]+)/g)) {
    if (!(u in unit)) return undefined;
    total += Number(n) * unit[u];
  }
  return total;
}

/** Environment variables the program sets itself (KIRO_BUILD_TIMEOUT: the builds get
 *  `buildTimeoutMinutes`, the consumer none, so it leaves each build to the project's timeout);
 *  extra environment may not override them. */
export const RESERVED_ENV = [
  "KIRO_BACKEND",
  "KIRO_AWS_REGION",
  "KIRO_QUEUE_URL",
  "KIRO_DLQ_URL",
  "KIRO_LEASE_TABLE",
  "KIRO_CODEBUILD_PROJECT",
  "KIRO_BUILD_RUNNER",
  "KIRO_BUILD_TIMEOUT",
  "KIRO_FORGE",
  "KIRO_GITHUB_PROJECT",
  "KIRO_GITHUB_APP_ID",
  "KIRO_GITHUB_APP_INSTALLATION_ID",
  "KIRO_GITHUB_APP_PRIVATE_KEY",
  "KIRO_LOG_FORMAT",
  "KIRO_METRICS",
  "KIRO_MAX_JOBS",
  "KIRO_ITEM_AGENT_BUDGET",
  "KIRO_TEST_CMD",
  "KIRO_COVERAGE_FORMAT",
  "KIRO_COVERAGE_PATH",
  "KIRO_COVERAGE_THRESHOLD",
  "KIRO_JUNIT_PATH",
  "KIRO_FIX_ROUNDS",
  "KIRO_WORKER_VERSION",
  "KIRO_WORKER_SHA256",
  "KIRO_WORKER_URL",
  "KIRO_CLI_VERSION",
  "KIRO_CLI_SHA256",
  "KIRO_CLI_URL",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_TRACES_EXPORTER",
  "OTEL_METRICS_EXPORTER",
  "GITHUB_TOKEN",
  "KIRO_API_KEY",
];

export function parseConfig(stack: string, raw: RawConfig): StackConfig {
  const problems: string[] = [];
  const key = (k: string) => `${PROJECT}:${k}`;

  const str = (k: string, opts: { required?: boolean; def?: string; re?: RegExp; what?: string } = {}) => {
    const v = raw(k);
    if (v === undefined || v === null || v === "") {
      if (opts.required) problems.push(`${key(k)} is required${opts.what ? ` (${opts.what})` : ""}`);
      return opts.def;
    }
    if (typeof v !== "string") {
      problems.push(`${key(k)} must be a string, got ${JSON.stringify(v)}`);
      return opts.def;
    }
    if (opts.re && !opts.re.test(v)) {
      problems.push(`${key(k)} must be ${opts.what ?? `like ${opts.re}`}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const int = (k: string, def: number, min: number, max: number) => {
    const v = raw(k);
    if (v === undefined || v === null || v === "") return def;
    const n = typeof v === "number" ? v : typeof v === "string" && /^-?\d+$/.test(v.trim()) ? Number(v) : NaN;
    if (!Number.isInteger(n)) {
      problems.push(`${key(k)} must be an integer, got ${JSON.stringify(v)}`);
      return def;
    }
    if (n < min || n > max) {
      const range = min === 1 && max === Number.MAX_SAFE_INTEGER ? "a positive integer" : `between ${min} and ${max}`;
      problems.push(`${key(k)} must be ${range}, got ${n}`);
    }
    return n;
  };
  const bool = (k: string, def: boolean) => {
    const v = raw(k);
    if (v === undefined || v === null || v === "") return def;
    if (v === true || v === "true") return true;
    if (v === false || v === "false") return false;
    problems.push(`${key(k)} must be true or false, got ${JSON.stringify(v)}`);
    return def;
  };
  const json = (k: string): unknown => {
    const v = raw(k);
    if (typeof v !== "string") return v;
    try {
      return JSON.parse(v);
    } catch {
      problems.push(`${key(k)} must be valid JSON (Pulumi stores structured values as JSON), got ${JSON.stringify(v)}`);
      return undefined;
    }
  };
  const list = (k: string, re: RegExp, what: string) => {
    const v = json(k);
    if (v === undefined || v === null) {
      problems.push(`${key(k)} is required (a list of ${what})`);
      return [];
    }
    if (!Array.isArray(v) || v.length === 0 || v.some((s) => typeof s !== "string" || !re.test(s))) {
      problems.push(`${key(k)} must be a non-empty list of ${what}, got ${JSON.stringify(v)}`);
      return [];
    }
    return v as string[];
  };
  const env = (k: string) => {
    const v = json(k);
    if (v === undefined || v === null) return {};
    if (typeof v !== "object" || Array.isArray(v)) {
      problems.push(`${key(k)} must be a map of NAME: value, got ${JSON.stringify(v)}`);
      return {};
    }
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(v as Record<string, unknown>)) {
      if (!ENV_NAME.test(name)) problems.push(`${key(k)}.${name} is not a valid environment variable name`);
      else if (name.startsWith("CODEBUILD_")) problems.push(`${key(k)}.${name}: CODEBUILD_ variables are reserved by CodeBuild`);
      else if (RESERVED_ENV.includes(name)) problems.push(`${key(k)}.${name} is set by the program and cannot be overridden`);
      else if (typeof value !== "string") problems.push(`${key(k)}.${name} must be a string`);
      else out[name] = value;
    }
    return out;
  };

  if (!/^[a-z][a-z0-9-]{0,19}$/.test(stack)) {
    problems.push(`stack name ${JSON.stringify(stack)} must be lower-case letters, digits and '-' (at most 20 characters)`);
  }
  const imageTag = str("imageTag", {
    required: true,
    re: /^(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/,
    what: "an immutable image tag such as a version or commit (not 'latest')",
  });
  const secretWhat = "a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)";
  const cfg: StackConfig = {
    stack,
    imageTag: imageTag ?? "",
    vpcId: str("vpcId", { required: true, re: /^vpc-[0-9a-f]+$/, what: "a VPC id (vpc-...)" }) ?? "",
    subnetIds: list("subnetIds", /^subnet-[0-9a-f]+$/, "subnet ids (subnet-...)"),
    assignPublicIp: bool("assignPublicIp", false),
    githubTokenSecretArn: str("githubTokenSecretArn", { required: true, re: SECRET_ARN, what: secretWhat }) ?? "",
    kiroApiKeySecretArn: str("kiroApiKeySecretArn", { required: true, re: SECRET_ARN, what: secretWhat }) ?? "",
    githubAppKeySecretArn: str("githubAppKeySecretArn", { re: SECRET_ARN, what: secretWhat }),
    githubAppId: str("githubAppId", { re: /^[A-Za-z0-9.]+$/, what: "the GitHub App's id (a number) or client id" }),
    githubAppInstallationId: str("githubAppInstallationId", { re: /^\d+$/, what: "the App installation's numeric id" }),
    githubProject:
      str("githubProject", {
        required: true,
        re: GITHUB_PROJECT,
        what: "the GitHub project as orgs/<owner>/<number>, users/<owner>/<number> or its https://github.com/... URL",
      }) ?? "",
    secretsKmsKeyArn: str("secretsKmsKeyArn", { re: KMS_KEY_ARN, what: "a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)" }),
    consumerMinTasks: int("consumerMinTasks", 0, 0, 1000),
    consumerMaxTasks: int("consumerMaxTasks", 10, 1, 1000),
    backlogPerTaskTarget: int("backlogPerTaskTarget", 8, 1, 10_000),
    consumerMaxJobs: int("consumerMaxJobs", 16, 1, 1000),
    itemAgentBudgetMinutes: int("itemAgentBudgetMinutes", 180, 1, 10080),
    consumerCpu: int("consumerCpu", 512, 256, 16384),
    consumerMemory: int("consumerMemory", 1024, 512, 122880),
    producerSchedule: str("producerSchedule", { def: "rate(5 minutes)", re: SCHEDULE, what: "rate(N minutes), cron(...) or at(...)" }) ?? "",
    buildTimeoutMinutes: int("buildTimeoutMinutes", 60, 5, 2160),
    queuedTimeoutMinutes: int("queuedTimeoutMinutes", 480, 5, 480),
    concurrentBuildLimit: int("concurrentBuildLimit", 10, 1, 1000),
    buildComputeType: str("buildComputeType", { def: "BUILD_GENERAL1_MEDIUM", re: /^BUILD_[A-Z0-9_]+$/, what: "a CodeBuild compute type" }) ?? "",
    buildImage: str("buildImage", { def: "aws/codebuild/standard:7.0" }) ?? "",
    workerVersion: str("workerVersion", { required: true, re: VERSION, what: "a pinned version such as 0.1.0" }) ?? "",
    workerSha256: str("workerSha256", { re: SHA256, what: "a lower-case hex SHA-256" }),
    workerUrl: str("workerUrl", { re: /^https:\/\//, what: "an https URL" }),
    kiroCliVersion: str("kiroCliVersion", { required: true, re: VERSION, what: "a pinned version such as 2.8.0" }) ?? "",
    kiroCliSha256: str("kiroCliSha256", { re: SHA256, what: "a lower-case hex SHA-256" }),
    kiroCliUrl: str("kiroCliUrl", { re: /^https:\/\//, what: "an https URL" }),
    testCommand: str("testCommand", { def: "npm test" }) ?? "",
    coverageFormat:
      str("coverageFormat", {
        def: "auto",
        re: new RegExp(`^(${COVERAGE_FORMATS.join("|")})$`),
        what: `one of ${COVERAGE_FORMATS.join(", ")}`,
      }) ?? "",
    coveragePath: str("coveragePath", { re: /^(?!\/)(?!.*\.\.)\S+$/, what: "a path relative to the checkout" }),
    coverageThreshold: int("coverageThreshold", 80, 0, 100),
    junitPath: str("junitPath", { re: /^(?!\/)(?!.*\.\.)\S+$/, what: "a path relative to the checkout" }),
    fixRounds: int("fixRounds", 2, 0, 10),
    buildOtlpEndpoint: str("buildOtlpEndpoint", {
      re: /^https?:\/\/[^\s/]+(:\d+)?\/?$/,
      what: "an http(s) URL of an OTLP/HTTP collector the builds can reach (scheme, host and port, no path)",
    }),
    otelCollectorImage: str("otelCollectorImage", {
      def: "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0",
      re: /^[^:@\s]+(:(?!latest$)[A-Za-z0-9_.-]+|@sha256:[0-9a-f]{64})$/,
      what: "an image with a pinned tag or digest (not 'latest')",
    }) ?? "",
    logRetentionDays: int("logRetentionDays", 30, 1, 3653),
    deletionProtection: bool("deletionProtection", true),
    alarmEmail: str("alarmEmail", { re: /^[^@\s]+@[^@\s]+\.[^@\s]+$/, what: "an e-mail address" }),
    consumerEnvironment: env("consumerEnvironment"),
    producerEnvironment: env("producerEnvironment"),
    buildEnvironment: env("buildEnvironment"),
  };
  const app = { githubAppKeySecretArn: cfg.githubAppKeySecretArn, githubAppId: cfg.githubAppId, githubAppInstallationId: cfg.githubAppInstallationId };
  const appSet = Object.entries(app).filter(([, v]) => v !== undefined);
  if (appSet.length > 0 && appSet.length < 3) {
    for (const [k, v] of Object.entries(app)) {
      if (v === undefined) problems.push(`${key(k)} is required when ${appSet.map(([s]) => key(s)).join(" and ")} ${appSet.length === 1 ? "is" : "are"} set (a GitHub App needs its key, id and installation id)`);
    }
  }
  if (!(LOG_RETENTION_DAYS as readonly number[]).includes(cfg.logRetentionDays)) {
    problems.push(`${key("logRetentionDays")} must be one of ${LOG_RETENTION_DAYS.join(", ")}, got ${cfg.logRetentionDays}`);
  }
  // The worker refuses to start (every item dead-lettered) when its limits leave no room to
  // report inside the build's time-out: say so at preview time instead.
  const limits = Object.entries(WORKER_BUILD_LIMITS).map(([name, def]) => [name, cfg.buildEnvironment[name] ?? def] as const);
  const limitSeconds = limits.map(([, v]) => durationSeconds(v));
  if (limitSeconds.every((v) => v !== undefined)) {
    const need = limitSeconds.reduce((a: number, b) => a + (b ?? 0), 0) + WORKER_REPORT_ROOM_SECONDS;
    if (need > cfg.buildTimeoutMinutes * 60) {
      problems.push(
        `${key("buildTimeoutMinutes")} (${cfg.buildTimeoutMinutes}) leaves kiro-worker no time to report: ` +
          `${limits.map(([n, v]) => `${n} ${v}`).join(" + ")} + 5m for checkout, push and report need ${Math.ceil(need / 60)} minutes; ` +
          `raise ${key("buildTimeoutMinutes")} or lower those limits in ${key("buildEnvironment")}`,
      );
    }
  }
  if (cfg.consumerMaxTasks >= 1 && cfg.consumerMinTasks > cfg.consumerMaxTasks) {
    problems.push(`${key("consumerMinTasks")} (${cfg.consumerMinTasks}) must not exceed ${key("consumerMaxTasks")} (${cfg.consumerMaxTasks})`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return cfg;
}
