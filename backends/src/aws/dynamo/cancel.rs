//! `DynamoLeaseStore::cancel`: an item's `cancelled` record, written without holding the
//! lease, with the fence bump that makes every earlier holder stale.
//!
//! One consistent read of the lease row (and, when it names another item, of that item's
//! job row) decides with [`cancel_bumps`]; then ONE `TransactWriteItems`: an `Update` of
//! the lease row conditional on the fence and `current_item` seen (bumping: `ADD fence
//! :one`, `REMOVE owner`, `SET current_item`; not bumping: `current_item` set to what it
//! was), or a `Put` conditional on `attribute_not_exists(pk)` when there is no lease row
//! yet (fence 1), and a `Put` of the job row. The same actions `record` uses, so the
//! consumer's role needs no new permission.
//!
//! Invariant: the fence moves by exactly one, atomically with the release and the
//! record, and only if the row is still the one read; a row that changed in between is
//! read again ([`CANCEL_TRIES`] times, then `Contention`).

use super::{DynamoLeaseStore, JOB_PREFIX, LEASE_SK, get_s, key, n, parse_job, s, view_of};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use kiro_protocol::ports::lease::{CANCEL_TRIES, cancel_bumps};
use kiro_protocol::{Cancellation, Fence, ItemId, JobRecord, LeaseError, PortError};

impl DynamoLeaseStore {
    pub(super) async fn cancel_item(&self, job: &JobRecord) -> Result<Cancellation, LeaseError> {
        for _ in 0..CANCEL_TRIES {
            if let Some(done) = self.try_cancel(job).await? {
                return Ok(done);
            }
        }
        Err(LeaseError::Port(PortError::new(
            kiro_protocol::FailureClass::Contention,
            format!(
                "cancel of {} in {}: the lease row kept changing; try again",
                job.item, job.project
            ),
        )))
    }

    /// One read-decide-write round; `None` when the row changed under it.
    async fn try_cancel(&self, job: &JobRecord) -> Result<Option<Cancellation>, LeaseError> {
        let project = &job.project;
        let row = self.lease_row(project).await?;
        let seen = row.as_ref().map(|r| view_of(project, r));
        let current_item = row.as_ref().and_then(|r| get_s(r, "current_item"));
        let current = match current_item.and_then(|c| ItemId::parse(c).ok()) {
            Some(other) if other != job.item => {
                let r = self
                    .read(key(project, &format!("{JOB_PREFIX}{other}")))
                    .await
                    .map_err(PortError::from)?;
                r.as_ref().map(parse_job).transpose()?
            }
            _ => None,
        };
        let bumps = cancel_bumps(current_item, &job.item, current.as_ref());
        let fence = match (&seen, bumps) {
            (None, _) => Fence(1),
            (Some(v), true) => Fence(v.fence.0.saturating_add(1)),
            (Some(v), false) => v.fence,
        };
        let mut job = job.clone();
        job.fence = fence;
        let json = super::job::encode(&job)?;
        let lease_action = match &seen {
            None => {
                let mut row = key(project, LEASE_SK);
                row.insert("fence".into(), n(1));
                row.insert("current_item".into(), s(job.item.as_str()));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(row))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(|e| PortError::internal(format!("transaction put: {e}")))?;
                TransactWriteItem::builder().put(put).build()
            }
            Some(v) => {
                let ci_seen = current_item.unwrap_or_default();
                let mut u = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(project, LEASE_SK)))
                    .expression_attribute_names("#f", "fence")
                    .expression_attribute_names("#ci", "current_item")
                    .expression_attribute_values(":f", n(v.fence.0));
                u = if current_item.is_some() {
                    u.condition_expression("#f = :f AND #ci = :seen")
                        .expression_attribute_values(":seen", s(ci_seen))
                } else {
                    u.condition_expression("#f = :f AND attribute_not_exists(#ci)")
                };
                u = if bumps {
                    u.update_expression("SET #ci = :item REMOVE #o ADD #f :one")
                        .expression_attribute_names("#o", "owner")
                        .expression_attribute_values(":item", s(job.item.as_str()))
                        .expression_attribute_values(":one", n(1))
                } else {
                    u.update_expression("SET #ci = :seen")
                };
                let update = u
                    .build()
                    .map_err(|e| PortError::internal(format!("transaction update: {e}")))?;
                TransactWriteItem::builder().update(update).build()
            }
        };
        let res = self
            .write_with_job(lease_action, &job, &json, fence, None, None)
            .await;
        match res {
            Ok(()) => Ok(Some(Cancellation {
                fence,
                bumped: bumps,
            })),
            Err(e) if e.condition_failed => Ok(None),
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }
}
