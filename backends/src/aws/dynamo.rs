//! `LeaseStore` on one DynamoDB table: the per-project lease rows and the job records.
