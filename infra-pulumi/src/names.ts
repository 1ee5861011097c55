// Names shared by the stack's modules, the tests and the render tool.
//
// Invariant: a container name is defined once here; the task definitions, the producer-failure
// event pattern and the render tool all use these constants.
export const CONSUMER_CONTAINER = "consumer";
export const PRODUCER_CONTAINER = "producer";
export const OTEL_CONTAINER = "otel-collector";
