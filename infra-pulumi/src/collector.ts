// The configuration of the consumer's AWS Distro for OpenTelemetry collector sidecar: OTLP in
// (gRPC 4317, HTTP 4318 on the task's loopback), traces to X-Ray, metrics to CloudWatch as EMF
// log events. Handed to the collector through `AOT_CONFIG_CONTENT`, which the ADOT image reads in
// place of its bundled configuration files.
//
// Invariant: both pipelines exist (the bundled ecs-xray.yaml had traces only, so the consumer's
// OTLP metrics were dropped); the OTLP/HTTP receiver listens where the consumer's
// OTEL_EXPORTER_OTLP_ENDPOINT points (`SIDECAR_OTLP_ENDPOINT`); the OTLP metrics go to their own
// namespace, so they never double the EMF metrics the alarms read.
import { stringify } from "yaml";
import { METRICS_NAMESPACE } from "./alarms";
import { SIDECAR_OTLP_ENDPOINT } from "./environment";

/** Where the collector's metrics land (not the alarms' namespace: the consumer also writes EMF). */
export const OTLP_METRICS_NAMESPACE = `${METRICS_NAMESPACE}/OTLP`;

/** The environment variable the ADOT collector image reads its configuration from. */
export const COLLECTOR_CONFIG_VAR = "AOT_CONFIG_CONTENT";

export interface CollectorSettings {
  region: string;
  /** The log group the awsemf exporter writes to (created by the stack). */
  metricsLogGroup: string;
}

/** The collector configuration (YAML). */
export function collectorConfig(s: CollectorSettings): string {
  const httpPort = new URL(SIDECAR_OTLP_ENDPOINT).port;
  const config = {
    extensions: { health_check: {} },
    receivers: {
      otlp: {
        protocols: {
          grpc: { endpoint: "127.0.0.1:4317" },
          http: { endpoint: `127.0.0.1:${httpPort}` },
        },
      },
    },
    processors: {
      // ECS task attributes, for the per-task log stream of the metrics.
      "resourcedetection/ecs": { detectors: ["env", "ecs"], timeout: "2s", override: false },
      "batch/traces": { timeout: "1s", send_batch_size: 50 },
      "batch/metrics": { timeout: "60s" },
    },
    exporters: {
      awsxray: { region: s.region },
      awsemf: {
        region: s.region,
        namespace: OTLP_METRICS_NAMESPACE,
        log_group_name: s.metricsLogGroup,
        log_stream_name: "{TaskId}",
        dimension_rollup_option: "NoDimensionRollup",
      },
    },
    service: {
      extensions: ["health_check"],
      pipelines: {
        traces: { receivers: ["otlp"], processors: ["batch/traces"], exporters: ["awsxray"] },
        metrics: { receivers: ["otlp"], processors: ["resourcedetection/ecs", "batch/metrics"], exporters: ["awsemf"] },
      },
    },
  };
  return stringify(config);
}
