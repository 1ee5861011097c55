// Consumer service autoscaling: target tracking on backlog per task, and a step policy that
// starts the first task when work is visible and none runs.
//
// Invariant: the service's desired count belongs to these policies after the first deploy
// (the service ignores `desiredCount` changes); min and max come from the stack config.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "./config";

export interface ScalingArgs {
  prefix: string;
  cfg: StackConfig;
  tags: Record<string, string>;
  cluster: aws.ecs.Cluster;
  consumerService: aws.ecs.Service;
  queue: aws.sqs.Queue;
}

export function createScaling({ prefix, cfg, tags, cluster, consumerService, queue }: ScalingArgs): void {
  const scalingTarget = new aws.appautoscaling.Target("consumer-scaling", {
    serviceNamespace: "ecs",
    scalableDimension: "ecs:service:DesiredCount",
    resourceId: pulumi.interpolate`service/${cluster.name}/${consumerService.name}`,
    minCapacity: cfg.consumerMinTasks,
    maxCapacity: cfg.consumerMaxTasks,
  });
  const scalingRef = {
    serviceNamespace: scalingTarget.serviceNamespace,
    scalableDimension: scalingTarget.scalableDimension,
    resourceId: scalingTarget.resourceId,
  };
  new aws.appautoscaling.Policy("consumer-backlog-per-task", {
    name: `${prefix}-backlog-per-task`,
    policyType: "TargetTrackingScaling",
    ...scalingRef,
    targetTrackingScalingPolicyConfiguration: {
      targetValue: cfg.backlogPerTaskTarget,
      scaleInCooldown: 300,
      scaleOutCooldown: 60,
      customizedMetricSpecification: {
        metrics: [
          {
            id: "m1",
            label: "visible messages",
            returnData: false,
            metricStat: {
              metric: {
                namespace: "AWS/SQS",
                metricName: "ApproximateNumberOfMessagesVisible",
                dimensions: [{ name: "QueueName", value: queue.name }],
              },
              stat: "Sum",
            },
          },
          {
            id: "m2",
            label: "running consumer tasks",
            returnData: false,
            metricStat: {
              metric: {
                namespace: "ECS/ContainerInsights",
                metricName: "RunningTaskCount",
                dimensions: [
                  { name: "ClusterName", value: cluster.name },
                  { name: "ServiceName", value: consumerService.name },
                ],
              },
              stat: "Average",
            },
          },
          { id: "e1", label: "backlog per task", expression: "m1 / m2", returnData: true },
        ],
      },
    },
  });
  // Backlog per task has no datapoint at zero tasks: a step policy starts the first task.
  const fromZero = new aws.appautoscaling.Policy("consumer-scale-from-zero", {
    name: `${prefix}-scale-from-zero`,
    policyType: "StepScaling",
    ...scalingRef,
    stepScalingPolicyConfiguration: {
      adjustmentType: "ExactCapacity",
      cooldown: 60,
      metricAggregationType: "Maximum",
      stepAdjustments: [{ metricIntervalLowerBound: "0", scalingAdjustment: 1 }],
    },
  });
  const metric = (id: string, namespace: string, metricName: string, stat: string, dimensions?: Record<string, pulumi.Input<string>>) => ({
    id,
    returnData: false,
    metric: { namespace, metricName, stat, period: 300, dimensions },
  });
  // Scale-out from zero: work is visible and no consumer runs. Not an operator alarm: its only
  // action is the step policy above.
  new aws.cloudwatch.MetricAlarm("scale-from-zero-alarm", {
    name: `${prefix}-scale-from-zero`,
    alarmDescription: "Messages are visible while no consumer task runs",
    comparisonOperator: "GreaterThanThreshold",
    threshold: 0,
    evaluationPeriods: 1,
    treatMissingData: "missing",
    alarmActions: [fromZero.arn],
    metricQueries: [
      metric("visible", "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum", { QueueName: queue.name }),
      metric("tasks", "ECS/ContainerInsights", "RunningTaskCount", "Maximum", {
        ClusterName: cluster.name,
        ServiceName: consumerService.name,
      }),
      { id: "idle_with_work", label: "visible work, no tasks", expression: "IF(visible > 0 AND FILL(tasks, 0) == 0, 1, 0)", returnData: true },
    ],
    tags,
  });
}
