//! Spans over the wire: an OTLP/HTTP receiver gets the pipeline's spans (placeholder).
