// IAM plumbing: one role per component (trusting its one service), one inline policy per role,
// and the statement helper every grant goes through.
//
// Invariant: a role's only permissions are the one inline policy `grant` writes for it (no
// managed policies, no attachments), so the rendered policy is the whole of what it may do.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";
import { COMPONENTS, TRUSTED_SERVICE, allow, document } from "./permissions";
import type { Component, Statement } from "./permissions";

export type Roles = Record<Component, aws.iam.Role>;

export function createRoles(prefix: string, cfg: StackConfig, tags: Record<string, string>): Roles {
  const roles = {} as Roles;
  for (const component of COMPONENTS) {
    roles[component] = new aws.iam.Role(`${component}-role`, {
      name: `${prefix}-${component}`,
      description: `kiro ${cfg.stack}: ${component}`,
      assumeRolePolicy: JSON.stringify({
        Version: "2012-10-17",
        Statement: [{ Effect: "Allow", Principal: { Service: TRUSTED_SERVICE[component] }, Action: "sts:AssumeRole" }],
      }),
      maxSessionDuration: 3600,
      tags,
    });
  }
  return roles;
}

/** The one inline policy of `component`'s role. */
export function grant(roles: Roles, component: Component, statements: pulumi.Input<Statement>[]): aws.iam.RolePolicy {
  return new aws.iam.RolePolicy(`${component}-policy`, {
    name: component,
    role: roles[component].name,
    policy: pulumi.all(statements).apply((s) => JSON.stringify(document(s as Statement[]))),
  });
}

/** An `Allow` statement over resources that may be outputs, with an optional condition. */
export function stmt(
  sid: string,
  actions: readonly string[],
  resources: pulumi.Input<string>[],
  condition?: pulumi.Input<Record<string, unknown>>,
): pulumi.Output<Statement> {
  return pulumi.all([pulumi.all(resources), condition]).apply(([r, c]) => {
    const s = allow(sid, actions, r);
    return c === undefined ? s : { ...s, Condition: c as Record<string, unknown> };
  });
}

/** The ARN of a log group's streams. */
export const logStreams = (group: aws.cloudwatch.LogGroup) => pulumi.interpolate`${group.arn}:log-stream:*`;
