//! OTLP metrics export (filled in by the metrics work).
