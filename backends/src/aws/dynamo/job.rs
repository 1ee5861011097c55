//! Job-record writes on DynamoDB: one `TransactWriteItems` that updates the lease row
//! under a condition on its owner and fence, and puts the item's record beside it.
//!
//! Invariant: a record is written only in the same transaction as a lease-row update
//! conditional on `owner = lease.owner AND fence = lease.fence`, so no write of a holder
//! whose fence moved can land. The lease-row update notes the item (`current_item`) and,
//! for the last record of a hold, also removes the owner (the release): a new holder that
//! finds the lease free finds the record written. A create adds `attribute_not_exists` on
//! the record, and a refused transaction whose lease row is still the caller's means the
//! record existed.

use super::{DynamoLeaseStore, JOB_PREFIX, JOB_TTL_S, LEASE_SK, classify_transaction, get_s};
use super::{key, n, s};
use crate::aws::classify::AwsError;
use aws_sdk_dynamodb::types::{
    Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use kiro_protocol::{FailureClass, Fence, JobRecord, Lease, LeaseError, PortError};

/// What one job-record write does besides writing the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JobWrite {
    /// Write over the item's record, if any.
    Upsert,
    /// Write only when the item has no record (`false`: nothing written).
    Create,
    /// Write over the item's record and release the lease, in one transaction.
    UpsertAndRelease,
}

impl DynamoLeaseStore {
    /// The one fenced job-record write (see the module documentation): `Ok(true)` when the
    /// record was written, `Ok(false)` when a create found a record.
    pub(super) async fn write_job(
        &self,
        lease: &Lease,
        job: &JobRecord,
        how: JobWrite,
    ) -> Result<bool, LeaseError> {
        let json = encode(job)?;
        let lease_row = match how {
            JobWrite::UpsertAndRelease => "SET #ci = :ci REMOVE #o",
            JobWrite::Upsert | JobWrite::Create => "SET #ci = :ci",
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&lease.project, LEASE_SK)))
            .update_expression(lease_row)
            .condition_expression("#o = :o AND #f = :f")
            .expression_attribute_names("#ci", "current_item")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#f", "fence")
            .expression_attribute_values(":ci", s(job.item.as_str()))
            .expression_attribute_values(":o", s(&lease.owner))
            .expression_attribute_values(":f", n(lease.fence.0))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| PortError::internal(format!("transaction update: {e}")))?;
        let create = (how == JobWrite::Create).then_some("attribute_not_exists(pk)");
        let lease_action = TransactWriteItem::builder().update(update).build();
        let written = self
            .write_with_job(
                lease_action,
                job,
                &json,
                lease.fence,
                Some(&lease.owner),
                create,
            )
            .await;
        match written {
            Ok(()) => Ok(true),
            Err(e) if e.condition_failed => {
                // Either condition: the lease row tells which.
                let row = self.lease_row(&lease.project).await?;
                let still_mine = row.as_ref().is_some_and(|r| {
                    get_s(r, "owner") == Some(lease.owner.as_str())
                        && super::view_of(&lease.project, r).fence == lease.fence
                });
                if how == JobWrite::Create && still_mine {
                    Ok(false)
                } else {
                    Err(self.fence_lost(lease, row.as_ref()))
                }
            }
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }

    /// One `TransactWriteItems`: `lease_action` (the lease row's conditional write) and
    /// the put of `job`'s row (`json` its encoding, written under `fence`, by `owner` when
    /// a holder writes it; `condition` on the put, if any). After an unknown outcome the
    /// write counts as applied when the stored record is `json`.
    pub(super) async fn write_with_job(
        &self,
        lease_action: TransactWriteItem,
        job: &JobRecord,
        json: &str,
        fence: Fence,
        owner: Option<&str>,
        condition: Option<&str>,
    ) -> Result<(), AwsError> {
        let job_key = key(&job.project, &format!("{JOB_PREFIX}{}", job.item));
        let mut row = job_key.clone();
        row.insert("job".into(), s(json));
        row.insert("item".into(), s(job.item.as_str()));
        row.insert("state".into(), s(job.state.as_str()));
        row.insert("fence".into(), n(fence.0));
        if let Some(owner) = owner {
            row.insert("owner".into(), s(owner));
        }
        row.insert("updated_at".into(), n(job.updated_at.millis()));
        row.insert(
            "expires_ttl".into(),
            n(job.updated_at.as_secs() + JOB_TTL_S),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(row))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|e| {
                AwsError::new(
                    "dynamodb:TransactWriteItems",
                    FailureClass::Internal,
                    format!("transaction put: {e}"),
                )
            })?;
        let items = vec![lease_action, TransactWriteItem::builder().put(put).build()];
        self.write(
            "dynamodb:TransactWriteItems",
            || {
                self.client
                    .transact_write_items()
                    .set_transact_items(Some(items.clone()))
                    .send()
            },
            classify_transaction,
            |_| (),
            || async {
                let got = self.read(job_key.clone()).await?;
                Ok(got.filter(|r| get_s(r, "job") == Some(json)).map(|_| ()))
            },
        )
        .await
    }
}

/// A job record as stored in its row's `job` attribute.
pub(super) fn encode(job: &JobRecord) -> Result<String, PortError> {
    serde_json::to_string(job).map_err(|e| PortError::internal(format!("job record: {e}")))
}
