// The IAM actions each component may use: the one table the roles are built from, the policy
// checks compare against, and the README's "Deploying to AWS" section repeats.
//
// Invariant: a role's inline policy grants exactly the actions listed here for its component,
// never an action with `*`, and `Resource: "*"` only for the actions in
// `ACTIONS_WITHOUT_RESOURCE_SCOPE` (AWS offers no resource-level permission for them).

export type Component =
  | "producer-task"
  | "producer-execution"
  | "consumer-task"
  | "consumer-execution"
  | "codebuild"
  | "scheduler";

/** Pull the image, write the container logs, read the container's secrets. */
const EXECUTION = [
  "ecr:GetAuthorizationToken",
  "ecr:BatchCheckLayerAvailability",
  "ecr:GetDownloadUrlForLayer",
  "ecr:BatchGetImage",
  "logs:CreateLogStream",
  "logs:PutLogEvents",
  "secretsmanager:GetSecretValue",
];

/** What the ADOT collector sidecar needs to export traces to X-Ray (its metrics, EMF log events,
 *  need logs:CreateLogStream and logs:PutLogEvents on the stack's otel-metrics log group). */
export const XRAY_ACTIONS = [
  "xray:PutTraceSegments",
  "xray:PutTelemetryRecords",
  "xray:GetSamplingRules",
  "xray:GetSamplingTargets",
  "xray:GetSamplingStatisticSummaries",
];

export const ROLE_ACTIONS: Record<Component, readonly string[]> = {
  // kiro-producer --once: enqueue ready items (SendMessage; nothing else).
  "producer-task": ["sqs:SendMessage"],
  "producer-execution": EXECUTION,
  // kiro-consumer run: receive, extend, release and delete on the work queue, read both queues'
  // depth (--until-idle), dead-letter to the DLQ (SendMessage), the job-record table (conditional
  // UpdateItem; TransactWriteItems is authorised per item as UpdateItem + PutItem), the builds
  // (ListBuildsForProject finds a build by its key after a crash between intent and build id),
  // its own scale-in protection, and the sidecar's X-Ray traces and EMF log events.
  // See docs/iam.md for the code path of each action.
  "consumer-task": [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:SendMessage",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "codebuild:StartBuild",
    "codebuild:BatchGetBuilds",
    "codebuild:StopBuild",
    "codebuild:ListBuildsForProject",
    "ecs:UpdateTaskProtection",
    ...XRAY_ACTIONS,
    "logs:CreateLogStream",
    "logs:PutLogEvents",
  ],
  "consumer-execution": EXECUTION,
  // The build: its log group, its JUnit report group, the fence check on the job-record table
  // (GetItem), and its secrets (the buildspec's and the App key variable).
  codebuild: [
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "codebuild:CreateReport",
    "codebuild:UpdateReport",
    "codebuild:BatchPutTestCases",
    "dynamodb:GetItem",
    "secretsmanager:GetSecretValue",
  ],
  // EventBridge Scheduler: start the producer task (tagging it: propagateTags), handing it its
  // two roles, and send a failed invocation to the schedule's dead-letter queue.
  scheduler: ["ecs:RunTask", "ecs:TagResource", "iam:PassRole", "sqs:SendMessage"],
};

/** The roles that read a secret; with `secretsKmsKeyArn` they may also decrypt with that key
 *  (through Secrets Manager only). */
export const SECRET_READERS: readonly Component[] = ["producer-execution", "consumer-execution", "codebuild"];

/** Options of a stack that change what a role may do. */
export interface PermissionOptions {
  /** A customer-managed KMS key encrypts the secrets (`secretsKmsKeyArn`). */
  secretsKms: boolean;
}

/** Every action `component`'s role grants in a stack with `opts`. */
export function roleActions(component: Component, opts: PermissionOptions = { secretsKms: false }): readonly string[] {
  const base = ROLE_ACTIONS[component];
  return opts.secretsKms && SECRET_READERS.includes(component) ? [...base, "kms:Decrypt"] : base;
}

/** The service each component's role trusts. */
export const TRUSTED_SERVICE: Record<Component, string> = {
  "producer-task": "ecs-tasks.amazonaws.com",
  "producer-execution": "ecs-tasks.amazonaws.com",
  "consumer-task": "ecs-tasks.amazonaws.com",
  "consumer-execution": "ecs-tasks.amazonaws.com",
  codebuild: "codebuild.amazonaws.com",
  scheduler: "scheduler.amazonaws.com",
};

/** Actions AWS authorises only on `Resource: "*"`. */
export const ACTIONS_WITHOUT_RESOURCE_SCOPE: readonly string[] = ["ecr:GetAuthorizationToken", ...XRAY_ACTIONS];

export const COMPONENTS = Object.keys(ROLE_ACTIONS) as Component[];

/** An IAM policy statement as the program writes it. */
export interface Statement {
  Sid?: string;
  Effect: "Allow" | "Deny";
  Action: string[];
  Resource: string[];
  Condition?: Record<string, unknown>;
}

export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: Statement[];
}

/** One `Allow` statement; resources must be given (use `ACTIONS_WITHOUT_RESOURCE_SCOPE` for `*`). */
export function allow(sid: string, actions: readonly string[], resources: readonly string[]): Statement {
  return { Sid: sid, Effect: "Allow", Action: [...actions], Resource: [...resources] };
}

export function document(statements: Statement[]): PolicyDocument {
  return { Version: "2012-10-17", Statement: statements };
}
