//! `LeaseStore` on one DynamoDB table: the consumers' sessions, the per-project lease
//! rows and the job records.
//!
//! Schema (one table, created by [`create_table`]):
//!
//! | attribute     | type | session row (`sk = "SESSION"`) | lease row (`sk = "LEASE"`)   | job row (`sk = "JOB#<item>"`) |
//! |---------------|------|--------------------------------|------------------------------|-------------------------------|
//! | `pk`          | S    | session id (partition key)     | project key                  | project key                   |
//! | `sk`          | S    | `SESSION` (sort key)           | `LEASE`                      | `JOB#<item id>`               |
//! | `owner`       | S    | —                              | holding session; absent when released | owner at the last write |
//! | `fence`       | N    | —                              | fencing token, `ADD fence :one` per acquire | fence of the last write |
//! | `expires_at`  | N    | session expiry, epoch **ms**   | holder session's expiry at the acquire (read only for a holder without a session row) | — |
//! | `ended`       | BOOL | present once ended (by its owner or a takeover) | —           | —                             |
//! | `open_token`  | S    | random token of the open       | —                            | —                             |
//! | `current_item`| S    | —                              | item of the last job record written | —                      |
//! | `acquire_token`| S   | —                              | random token of the last acquire | —                         |
//! | `job`         | S    | —                              | —                            | the `JobRecord` as JSON       |
//! | `item`,`state`| S    | —                              | —                            | indexed copies of the record  |
//! | `updated_at`  | N    | —                              | —                            | epoch ms of the record        |
//! | `expires_ttl` | N    | epoch **seconds**, DynamoDB TTL, clean-up only (expiry + 7 days / update + 90 days) |
//!
//! Operations (`session.rs`, `acquire.rs`, here):
//! - `open_session`: `PutItem` conditional on `attribute_not_exists(pk)`;
//!   `renew_session`: ONE `UpdateItem` of the session row conditional on it existing and not
//!   being ended — the only write of a heartbeat; `end_session`: `UpdateItem SET ended`;
//! - `acquire` of a free project (absent or released): ONE conditional `UpdateItem`
//!   (`SET owner … ADD fence :one`, `ReturnValuesOnConditionCheckFailure = ALL_OLD` names
//!   the holder on failure); of a held one: the holder's session is read and, when it is
//!   not live, ONE `TransactWriteItems` takes the lease (`Update` conditional on the holder
//!   and fence seen) and ends the holder's session (`Update` conditional on its expiry
//!   being beyond the skew bound, or it already ended), then the row is read for the fence;
//! - `release`: `UpdateItem` conditional on `owner` and `fence`;
//! - `record`: `TransactWriteItems` — an `Update` of the lease row (sets `current_item`)
//!   conditional on `owner` + `fence`, and a `Put` of the job row;
//! - `cancel` (`cancel.rs`): reads, then one `TransactWriteItems` conditional on the
//!   lease row read (bumping the fence and releasing it, or leaving it) with the job row;
//! - reads are strongly consistent.
//!
//! Invariant: every call is classified and retried by the shared `call` helper (writes
//! through its `classified`, under the re-read rule below). A write whose result is
//! unknown (timeout, 5xx, lost connection) is re-read with a consistent read before
//! anything is concluded: the open and acquire tokens, the renewed expiry, the ended flag,
//! the released owner or the written job JSON tell whether it was applied, and only a
//! write known not to be applied is retried. TTL never decides anything: expiry is judged
//! from `expires_at` against the `Clock` port.

mod acquire;
mod cancel;
mod job;
mod session;
mod table;

use job::JobWrite;
pub use table::create_table;
use table::parse_job;

use super::call::{call, classified};
use super::classify::{AwsError, class_of_cancellation};
use super::retry::{CallBackoff, retry};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use kiro_protocol::{
    Clock, FailureClass, Fence, ItemId, JobRecord, Lease, LeaseError, LeaseStore, LeaseView,
    PortError, ProjectKey, Session, SessionView,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::instrument;

const LEASE_SK: &str = "LEASE";
const SESSION_SK: &str = "SESSION";
const JOB_PREFIX: &str = "JOB#";
const LEASE_TTL_GRACE_S: i64 = 7 * 24 * 3600;
const JOB_TTL_S: i64 = 90 * 24 * 3600;

type Item = HashMap<String, AttributeValue>;

/// `LeaseStore` over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoLeaseStore {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
    skew: Duration,
    backoff: CallBackoff,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|s| s.parse().ok())
}

/// A cancelled transaction is classified by its items' cancellation reasons (a failed
/// condition is contention, as for one conditional write).
fn classify_transaction(e: &SdkError<TransactWriteItemsError, HttpResponse>, c: &mut AwsError) {
    if let Some(TransactWriteItemsError::TransactionCanceledException(t)) = e.as_service_error()
        && let Some(class) =
            class_of_cancellation(t.cancellation_reasons().iter().map(|r| r.code()))
    {
        c.class = class;
        c.condition_failed = class == FailureClass::Contention;
    }
}

fn key(project: &ProjectKey, sk: &str) -> Item {
    key_of(project.as_str(), sk)
}

fn key_of(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn session_view(id: &str, item: &Item) -> SessionView {
    SessionView {
        id: id.to_owned(),
        expires_at: kiro_protocol::Timestamp(get_n(item, "expires_at").unwrap_or(0)),
        ended: item.contains_key("ended"),
    }
}

fn view_of(project: &ProjectKey, item: &Item) -> LeaseView {
    LeaseView {
        project: project.clone(),
        owner: get_s(item, "owner").map(str::to_owned),
        fence: Fence(get_n(item, "fence").unwrap_or(0).max(0) as u64),
        current_item: get_s(item, "current_item").and_then(|i| ItemId::parse(i).ok()),
    }
}

impl DynamoLeaseStore {
    /// A store on `table`; a session counts as expired only `skew` after its `expires_at`.
    pub fn new(
        client: Client,
        table: impl Into<String>,
        clock: Arc<dyn Clock>,
        skew: Duration,
    ) -> Self {
        DynamoLeaseStore {
            client,
            table: table.into(),
            clock,
            skew,
            backoff: CallBackoff::default(),
        }
    }

    /// A store reaching DynamoDB as `aws` says (what the binaries' wiring calls).
    pub async fn connect(
        aws: &super::settings::AwsSettings,
        table: impl Into<String>,
        clock: Arc<dyn Clock>,
        skew: Duration,
    ) -> Self {
        let config = super::settings::sdk_config(aws).await;
        DynamoLeaseStore::new(Client::new(&config), table, clock, skew)
    }

    /// Create this store's table (tests, operators).
    pub async fn create_table(&self) -> Result<(), PortError> {
        create_table(&self.client, &self.table).await
    }

    /// The same store with another backoff for its calls.
    pub fn with_backoff(mut self, backoff: CallBackoff) -> Self {
        self.backoff = backoff;
        self
    }

    async fn read(&self, key: Item) -> Result<Option<Item>, AwsError> {
        call(&self.backoff, "dynamodb:GetItem", |_| {
            self.client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .consistent_read(true)
                .send()
        })
        .await
        .map(|o| o.item)
    }

    async fn lease_row(&self, project: &ProjectKey) -> Result<Option<Item>, PortError> {
        Ok(self.read(key(project, LEASE_SK)).await?)
    }

    async fn session_row(&self, id: &str) -> Result<Option<Item>, PortError> {
        Ok(self.read(key_of(id, SESSION_SK)).await?)
    }

    fn fence_lost(&self, lease: &Lease, row: Option<&Item>) -> LeaseError {
        LeaseError::FenceLost {
            project: lease.project.clone(),
            mine: lease.fence,
            current: row.map(|r| view_of(&lease.project, r).fence),
        }
    }

    /// Run a conditional write of `operation` with retries: `request` builds and sends one
    /// attempt, `refine` sees a refusal beside its class (as in [`classified`]), `applied`
    /// makes the result of the service's answer; after an attempt whose outcome is
    /// unknown, `settled` re-reads and answers `Some(v)` when the write turns out applied.
    async fn write<T, O, E, Fut, C, CF>(
        &self,
        operation: &str,
        mut request: impl FnMut() -> Fut,
        refine: impl Fn(&SdkError<E, HttpResponse>, &mut AwsError),
        applied: impl Fn(O) -> T,
        settled: C,
    ) -> Result<T, AwsError>
    where
        Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        C: Fn() -> CF,
        CF: Future<Output = Result<Option<T>, AwsError>>,
    {
        let unknown = AtomicBool::new(false);
        let res = retry(&self.backoff, |_| {
            let check = unknown.load(Ordering::Relaxed).then(&settled);
            let sent = Box::pin(request());
            let (unknown, refine, applied) = (&unknown, &refine, &applied);
            async move {
                if let Some(check) = check
                    && let Some(v) = check.await?
                {
                    return Ok(v);
                }
                let r = classified(operation, sent, refine).await.map(applied);
                if let Err(e) = &r
                    && e.outcome_unknown
                {
                    unknown.store(true, Ordering::Relaxed);
                }
                r
            }
        })
        .await;
        match res {
            Err(e) if unknown.load(Ordering::Relaxed) && e.condition_failed => {
                // An earlier attempt may have applied and made this one's condition fail.
                match settled().await? {
                    Some(v) => Ok(v),
                    None => Err(e),
                }
            }
            Err(e) if e.outcome_unknown => match settled().await {
                Ok(Some(v)) => Ok(v),
                _ => Err(e),
            },
            other => other,
        }
    }

    /// A [`write`](Self::write) fenced by `lease` (renew, release, record): a refused
    /// condition means the fence is lost, and the row re-read names the current one.
    async fn fenced<O, E, Fut, CF>(
        &self,
        lease: &Lease,
        operation: &str,
        request: impl FnMut() -> Fut,
        refine: impl Fn(&SdkError<E, HttpResponse>, &mut AwsError),
        settled: impl Fn() -> CF,
    ) -> Result<(), LeaseError>
    where
        Fut: Future<Output = Result<O, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        CF: Future<Output = Result<Option<()>, AwsError>>,
    {
        let res = self
            .write(operation, request, refine, |_| (), settled)
            .await;
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.condition_failed => {
                let row = self.lease_row(&lease.project).await?;
                Err(self.fence_lost(lease, row.as_ref()))
            }
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }

    /// An `UpdateItem` of `lease`'s row that only applies while its owner and fence are
    /// still the caller's (renew and release): `update` completes the request, `applied`
    /// tells from the row re-read after an unknown outcome whether it was applied.
    async fn update_fenced_lease(
        &self,
        lease: &Lease,
        update: impl Fn(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
        applied: impl Fn(&LeaseView) -> bool,
    ) -> Result<(), LeaseError> {
        self.fenced(
            lease,
            "dynamodb:UpdateItem",
            || {
                let req = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(&lease.project, LEASE_SK)))
                    .condition_expression("#o = :o AND #f = :f")
                    .expression_attribute_names("#o", "owner")
                    .expression_attribute_names("#f", "fence")
                    .expression_attribute_values(":o", s(&lease.owner))
                    .expression_attribute_values(":f", n(lease.fence.0));
                update(req).send()
            },
            |_, _| {},
            || async {
                let row = self.read(key(&lease.project, LEASE_SK)).await?;
                Ok(row
                    .filter(|r| applied(&view_of(&lease.project, r)))
                    .map(|_| ()))
            },
        )
        .await
    }
}

#[async_trait]
impl LeaseStore for DynamoLeaseStore {
    #[instrument(skip_all, fields(session = %id))]
    async fn open_session(&self, id: &str, ttl: Duration) -> Result<Session, LeaseError> {
        self.open_row(id, ttl).await
    }

    #[instrument(skip_all, fields(session = %session.id))]
    async fn renew_session(&self, session: &Session, ttl: Duration) -> Result<Session, LeaseError> {
        self.renew_row(session, ttl).await
    }

    #[instrument(skip_all, fields(session = %session.id))]
    async fn end_session(&self, session: &Session) -> Result<(), LeaseError> {
        self.end_row(session).await
    }

    #[instrument(skip_all, fields(session = %id))]
    async fn session(&self, id: &str) -> Result<Option<SessionView>, PortError> {
        Ok(self.session_row(id).await?.map(|r| session_view(id, &r)))
    }

    #[instrument(skip_all, fields(project = %project, session = %session.id))]
    async fn acquire(&self, project: &ProjectKey, session: &Session) -> Result<Lease, LeaseError> {
        self.take(project, session).await
    }

    #[instrument(skip_all, fields(project = %lease.project, fence = %lease.fence))]
    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.update_fenced_lease(
            lease,
            |req| req.update_expression("REMOVE #o"),
            |v| v.owner.is_none() && v.fence == lease.fence,
        )
        .await
    }

    #[instrument(skip_all, fields(project = %project))]
    async fn get(&self, project: &ProjectKey) -> Result<Option<LeaseView>, PortError> {
        Ok(self.lease_row(project).await?.map(|r| view_of(project, &r)))
    }

    #[instrument(skip_all, fields(project = %lease.project, item = %job.item, fence = %lease.fence))]
    async fn record(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError> {
        self.write_job(lease, job, JobWrite::Upsert)
            .await
            .map(|_| ())
    }

    #[instrument(skip_all, fields(project = %lease.project, item = %job.item, fence = %lease.fence))]
    async fn record_new(&self, lease: &Lease, job: &JobRecord) -> Result<bool, LeaseError> {
        self.write_job(lease, job, JobWrite::Create).await
    }

    #[instrument(skip_all, fields(project = %lease.project, item = %job.item, fence = %lease.fence))]
    async fn record_and_release(&self, lease: &Lease, job: &JobRecord) -> Result<(), LeaseError> {
        self.write_job(lease, job, JobWrite::UpsertAndRelease)
            .await
            .map(|_| ())
    }

    #[instrument(skip_all, fields(project = %project, item = %item))]
    async fn job(
        &self,
        project: &ProjectKey,
        item: &ItemId,
    ) -> Result<Option<JobRecord>, PortError> {
        let row = self
            .read(key(project, &format!("{JOB_PREFIX}{item}")))
            .await?;
        row.map(|r| parse_job(&r)).transpose()
    }

    #[instrument(skip_all)]
    async fn jobs(&self) -> Result<Vec<JobRecord>, PortError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = call(&self.backoff, "dynamodb:Scan", |_| {
                self.client
                    .scan()
                    .table_name(&self.table)
                    .consistent_read(true)
                    .filter_expression("begins_with(sk, :job)")
                    .expression_attribute_values(":job", s(JOB_PREFIX))
                    .set_exclusive_start_key(start.clone())
                    .send()
            })
            .await?;
            for r in page.items.unwrap_or_default() {
                out.push(parse_job(&r)?);
            }
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| {
            (a.project.as_str(), a.updated_at).cmp(&(b.project.as_str(), b.updated_at))
        });
        Ok(out)
    }

    #[instrument(skip_all, fields(project = %job.project, item = %job.item))]
    async fn cancel(&self, job: &JobRecord) -> Result<kiro_protocol::Cancellation, LeaseError> {
        self.cancel_item(job).await
    }
}
