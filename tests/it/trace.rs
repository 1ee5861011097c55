//! One trace per work item, in memory, across producer, consumer and worker (placeholder).
