//! `WorkQueue` on an SQS FIFO queue with a FIFO dead-letter queue.
