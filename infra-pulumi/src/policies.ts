// Policy checks over the resources a program registers: least-privilege IAM, log retention,
// encryption, FIFO dead-letter queues, secrets by reference, ECS stop timeouts.
//
// Invariant: the rules are pure functions of resource records (type, logical name, inputs), so
// the same code runs over every resource the mocks register and over hand-made bad resources
// in the negative tests; `checkAll` returns every violation, never just the first.
import { ACTIONS_WITHOUT_RESOURCE_SCOPE, ROLE_ACTIONS, roleActions } from "./permissions";
import type { Component } from "./permissions";

/** A registered resource as the engine (or the mocks) sees it. */
export interface ResourceRecord {
  type: string;
  name: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  inputs: Record<string, any>;
  /** The resource's outputs, when known (the mocks return `arn`, `url`, …). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  state?: Record<string, any>;
}

export interface Violation {
  rule: string;
  resource: string;
  message: string;
}

export interface PolicyContext {
  /** Every stack-owned ARN contains this (`kiro-<stack>`). */
  stackPrefix: string;
  /** ARNs outside the stack a role may name (the configured secrets and their KMS key). */
  externalArns: string[];
  /** The stack names a customer-managed KMS key for its secrets. */
  secretsKms?: boolean;
}

export interface Rule {
  name: string;
  description: string;
  check(r: ResourceRecord, all: ResourceRecord[], ctx: PolicyContext): string[];
}

export const T = {
  role: "aws:iam/role:Role",
  rolePolicy: "aws:iam/rolePolicy:RolePolicy",
  policy: "aws:iam/policy:Policy",
  attachment: "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
  managedAttachments: "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
  logGroup: "aws:cloudwatch/logGroup:LogGroup",
  queue: "aws:sqs/queue:Queue",
  table: "aws:dynamodb/table:Table",
  taskDefinition: "aws:ecs/taskDefinition:TaskDefinition",
} as const;

interface Stmt {
  Effect?: string;
  Condition?: Record<string, Record<string, unknown>>;
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: string | string[];
  NotResource?: string | string[];
}

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function parseJson(v: unknown): unknown {
  if (typeof v !== "string") return v;
  try {
    return JSON.parse(v);
  } catch {
    return undefined;
  }
}

/** The statements of every IAM policy document a resource carries. */
export function policyStatements(r: ResourceRecord): Stmt[] | undefined {
  const docs: unknown[] = [];
  if (r.type === T.rolePolicy || r.type === T.policy) docs.push(r.inputs.policy);
  else if (r.type === T.role) for (const p of r.inputs.inlinePolicies ?? []) docs.push(p.policy);
  else return undefined;
  const out: Stmt[] = [];
  for (const d of docs) {
    const doc = parseJson(d) as { Statement?: Stmt | Stmt[] } | undefined;
    if (!doc || doc.Statement === undefined) continue;
    out.push(...(Array.isArray(doc.Statement) ? doc.Statement : [doc.Statement]));
  }
  return out;
}

const SECRETISH = /(TOKEN|SECRET|PASSWORD|API_KEY|PRIVATE_KEY|CREDENTIALS)/;

/** A rule: every statement that allows `action` carries a `StringEquals` condition on `key` whose value passes `valid`. */
function conditionRequired(name: string, description: string, action: string, key: string, valid: (v: unknown) => boolean): Rule {
  return {
    name,
    description,
    check(r) {
      return (policyStatements(r) ?? [])
        .filter((s) => s.Effect === "Allow" && asList(s.Action).includes(action) && !valid(s.Condition?.StringEquals?.[key]))
        .map(() => `${action} without ${key.startsWith("i") ? "an" : "a"} ${key} condition`);
    },
  };
}

export const RULES: Rule[] = [
  {
    name: "iam-no-wildcard-action",
    description: "no IAM statement allows an action containing `*` (or uses NotAction)",
    check(r) {
      const out: string[] = [];
      for (const s of policyStatements(r) ?? []) {
        if (s.NotAction !== undefined) out.push("statement uses NotAction");
        for (const a of asList(s.Action)) if (a.includes("*")) out.push(`action ${JSON.stringify(a)} has a wildcard`);
      }
      return out;
    },
  },
  {
    name: "iam-actions-match-component",
    description: "each role's inline policy grants exactly the documented actions of its component",
    check(r, _all, ctx) {
      if (r.type === T.attachment || r.type === T.managedAttachments) {
        return ["managed policy attachments are not allowed (their actions are not in ROLE_ACTIONS)"];
      }
      if (r.type === T.policy) return ["standalone IAM policies are not allowed (use one inline policy per role)"];
      if (r.type === T.role && (r.inputs.managedPolicyArns ?? []).length > 0) return ["role has managed policies"];
      if (r.type !== T.rolePolicy) return [];
      const component = r.inputs.name as Component;
      if (!ROLE_ACTIONS[component]) return [`policy name ${JSON.stringify(component)} is not a documented component`];
      const expected = roleActions(component, { secretsKms: ctx.secretsKms === true });
      const out: string[] = [];
      if (r.inputs.role !== `${ctx.stackPrefix}-${component}`) {
        out.push(`policy ${component} is attached to role ${JSON.stringify(r.inputs.role)}, not ${ctx.stackPrefix}-${component}`);
      }
      const granted = new Set<string>();
      for (const s of policyStatements(r) ?? []) {
        if (s.Effect === "Allow") for (const a of asList(s.Action)) granted.add(a);
      }
      const extra = [...granted].filter((a) => !expected.includes(a)).sort();
      const missing = expected.filter((a) => !granted.has(a));
      if (extra.length) out.push(`grants undocumented actions for ${component}: ${extra.join(", ")}`);
      if (missing.length) out.push(`does not grant documented actions for ${component}: ${missing.join(", ")}`);
      return out;
    },
  },
  {
    name: "iam-resources-scoped",
    description: "resources are the stack's own ARNs or configured secrets; `*` only for actions without resource scope",
    check(r, _all, ctx) {
      const out: string[] = [];
      for (const s of policyStatements(r) ?? []) {
        if (s.NotResource !== undefined) out.push("statement uses NotResource");
        for (const res of asList(s.Resource)) {
          if (res === "*") {
            const unscoped = asList(s.Action).filter((a) => !ACTIONS_WITHOUT_RESOURCE_SCOPE.includes(a));
            if (unscoped.length) out.push(`Resource "*" for actions that support resource scope: ${unscoped.join(", ")}`);
          } else if (!res.startsWith("arn:")) {
            out.push(`resource ${JSON.stringify(res)} is not an ARN`);
          } else if (!res.includes(ctx.stackPrefix) && !ctx.externalArns.includes(res)) {
            out.push(`resource ${res} belongs to neither the stack (${ctx.stackPrefix}) nor its configured secrets`);
          }
        }
      }
      return out;
    },
  },
  conditionRequired("iam-passrole-condition", "every iam:PassRole names the service the role is passed to (iam:PassedToService)", "iam:PassRole", "iam:PassedToService", (v) => typeof v === "string" || Array.isArray(v)),
  conditionRequired("kms-via-service", "kms:Decrypt is allowed only through a named service (kms:ViaService)", "kms:Decrypt", "kms:ViaService", (v) => typeof v === "string"),
  {
    name: "iam-one-policy-per-role",
    description: "every role has exactly one inline policy, named after its component",
    check(r, all) {
      if (r.type !== T.role) return [];
      const name = r.inputs.name as string;
      const policies = all.filter((p) => p.type === T.rolePolicy && p.inputs.role === name);
      return policies.length === 1 ? [] : [`role ${name} has ${policies.length} inline policies (expected 1)`];
    },
  },
  {
    name: "log-retention",
    description: "every log group has a retention period",
    check(r) {
      if (r.type !== T.logGroup) return [];
      const days = r.inputs.retentionInDays;
      return typeof days === "number" && days > 0 ? [] : [`log group ${r.inputs.name ?? r.name} keeps logs forever`];
    },
  },
  {
    name: "queue-encrypted",
    description: "every queue is encrypted at rest (SQS-managed or KMS)",
    check(r) {
      if (r.type !== T.queue) return [];
      return r.inputs.sqsManagedSseEnabled === true || r.inputs.kmsMasterKeyId ? [] : ["queue is not encrypted"];
    },
  },
  {
    name: "table-encrypted",
    description: "every DynamoDB table has server-side encryption with a KMS key enabled",
    check(r) {
      if (r.type !== T.table) return [];
      return r.inputs.serverSideEncryption?.enabled === true ? [] : ["table has no KMS server-side encryption"];
    },
  },
  {
    name: "fifo-dead-letter-queue",
    description: "a FIFO queue's dead-letter queue is FIFO and a known queue of the program",
    check(r, all) {
      if (r.type !== T.queue || !r.inputs.redrivePolicy) return [];
      const redrive = parseJson(r.inputs.redrivePolicy) as { deadLetterTargetArn?: string } | undefined;
      const target = all.find((q) => q.type === T.queue && q.state?.arn === redrive?.deadLetterTargetArn);
      if (!target) return [`dead-letter target ${redrive?.deadLetterTargetArn} is not a queue of this program`];
      return r.inputs.fifoQueue === true && target.inputs.fifoQueue !== true ? ["FIFO queue with a standard dead-letter queue"] : [];
    },
  },
  {
    name: "secrets-by-reference",
    description: "containers take secrets from Secrets Manager references, never plain environment values",
    check(r) {
      if (r.type !== T.taskDefinition) return [];
      const defs = (parseJson(r.inputs.containerDefinitions) ?? []) as { name: string; environment?: { name: string }[] }[];
      return defs.flatMap((c) =>
        (c.environment ?? []).filter((e) => SECRETISH.test(e.name)).map((e) => `container ${c.name} has ${e.name} as a plain environment value`),
      );
    },
  },
  {
    name: "ecs-stop-timeout",
    description: "every container stops within Fargate's 120 s limit",
    check(r) {
      if (r.type !== T.taskDefinition) return [];
      const defs = (parseJson(r.inputs.containerDefinitions) ?? []) as { name: string; stopTimeout?: number }[];
      return defs
        .filter((c) => c.stopTimeout !== undefined && (c.stopTimeout > 120 || c.stopTimeout < 0))
        .map((c) => `container ${c.name} has stopTimeout ${c.stopTimeout}`);
    },
  },
];

/** Every violation of every rule over every resource. */
export function checkAll(resources: ResourceRecord[], ctx: PolicyContext, rules: Rule[] = RULES): Violation[] {
  const out: Violation[] = [];
  for (const r of resources) {
    for (const rule of rules) {
      for (const message of rule.check(r, resources, ctx)) out.push({ rule: rule.name, resource: `${r.type}::${r.name}`, message });
    }
  }
  return out;
}
