// Pulumi mocks that stand in for the engine and the AWS provider: every resource is answered
// with the ARN, URL or name a real provider would give it (in one account and region), and
// recorded with its resolved inputs. The test harness and the render tool (scripts/render.ts)
// run the program under these same mocks.
//
// Invariant: `installMocks` is called once per process, before the program declares anything;
// after `pulumi.runtime.disconnect()` the returned list holds every registered resource with
// all inputs resolved (no unknowns: the mocks never run a preview).
import * as pulumi from "@pulumi/pulumi";
import type { ResourceRecord } from "./policies";

export interface MockSettings {
  stack: string;
  region: string;
  account: string;
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
export function fakeState(type: string, name: string, inputs: Record<string, unknown>, m: MockSettings): Record<string, unknown> {
  const { region, account } = m;
  const [, mod, kind] = /^aws:([a-z0-9]+)\/[^:]+:(.+)$/.exec(type) ?? [];
  const physical = String(inputs.name ?? inputs.family ?? name);
  const svc = SERVICE[mod ?? ""] ?? mod;
  const base = `arn:aws:${svc}:${region}:${account}`;
  const state: Record<string, unknown> = { name: physical };
  switch (type) {
    case "aws:sqs/queue:Queue":
      state.arn = `${base}:${physical}`;
      state.url = `https://sqs.${region}.amazonaws.com/${account}/${physical}`;
      break;
    case "aws:dynamodb/table:Table":
      state.arn = `${base}:table/${physical}`;
      break;
    case "aws:ecr/repository:Repository":
      state.arn = `${base}:repository/${physical}`;
      state.repositoryUrl = `${account}.dkr.ecr.${region}.amazonaws.com/${physical}`;
      break;
    case "aws:cloudwatch/logGroup:LogGroup":
      state.arn = `arn:aws:logs:${region}:${account}:log-group:${physical}`;
      break;
    case "aws:cloudwatch/eventRule:EventRule":
      state.arn = `arn:aws:events:${region}:${account}:rule/${physical}`;
      break;
    case "aws:cloudwatch/metricAlarm:MetricAlarm":
      state.arn = `${base}:alarm:${physical}`;
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
      state.arn = `arn:aws:iam::${account}:role/${physical}`;
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
    case "aws:scheduler/scheduleGroup:ScheduleGroup":
      state.arn = `${base}:schedule-group/${physical}`;
      break;
    case "aws:scheduler/schedule:Schedule":
      state.arn = `${base}:schedule/${String(inputs.groupName ?? "default")}/${physical}`;
      break;
    case "aws:appautoscaling/policy:Policy":
      state.arn = `${base}:scalingPolicy:0000:resource/ecs/policyName/${physical}`;
      break;
    default:
      state.arn = `${base}:${(kind ?? "resource").toLowerCase()}/${physical}`;
  }
  return state;
}

/** Install the mocks for one run of the program; returns the list the resources are recorded in. */
export function installMocks(m: MockSettings): ResourceRecord[] {
  const recorded: ResourceRecord[] = [];
  pulumi.runtime.setMocks(
    {
      newResource(args) {
        const state = { ...args.inputs, ...fakeState(args.type, args.name, args.inputs, m) };
        recorded.push({ type: args.type, name: args.name, inputs: args.inputs, state });
        return { id: `${args.name}-id`, state };
      },
      call(args) {
        switch (args.token) {
          case "aws:index/getRegion:getRegion":
            return { name: m.region, region: m.region, id: m.region };
          case "aws:index/getCallerIdentity:getCallerIdentity":
            return { accountId: m.account, arn: `arn:aws:iam::${m.account}:user/render`, userId: "render" };
          default:
            throw new Error(`unexpected invoke ${args.token}`);
        }
      },
    },
    "kiro-infra",
    m.stack,
    false,
  );
  return recorded;
}
