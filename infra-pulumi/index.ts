// Entry point of the Pulumi program: reads the stack's configuration, deploys, and exports the
// values the binaries' KIRO_* variables take.
//
// Invariant: a bad configuration stops here, before any resource is declared.
import * as pulumi from "@pulumi/pulumi";
import { PROJECT, parseConfig } from "./src/config";
import { createStack } from "./src/stack";

const config = new pulumi.Config(PROJECT);
const cfg = parseConfig(pulumi.getStack(), (key) => config.get(key));
const d = createStack(cfg);

/** KIRO_QUEUE_URL */
export const queueUrl = d.queue.url;
/** KIRO_DLQ_URL */
export const dlqUrl = d.dlq.url;
/** KIRO_LEASE_TABLE */
export const leaseTable = d.table.name;
/** KIRO_CODEBUILD_PROJECT */
export const codebuildProject = d.project.name;
export const cluster = d.cluster.name;
export const consumerService = d.consumerService.name;
export const repositoryUrl = d.repository.repositoryUrl;
export const alarmTopicArn = d.alarmTopic.arn;
