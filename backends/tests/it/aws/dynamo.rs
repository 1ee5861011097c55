//! Lease store on DynamoDB (moto).
