//! `acquire` on DynamoDB: one conditional `UpdateItem` when the project is free, a
//! transaction when its holder's session is no longer live (a takeover).
//!
//! Invariant: the fence moves only by `ADD fence :one` in a write whose condition names
//! the row's state as seen (free, or this holder at this fence), and a takeover ends the
//! holder's session in the same transaction, conditional on that session having expired
//! beyond the skew bound (or being ended) — so a session renewed in between keeps its
//! lease, and a session that lost a lease can never be renewed.

use super::{
    DynamoLeaseStore, Item, LEASE_SK, LEASE_TTL_GRACE_S, SESSION_SK, classify_transaction, get_n,
    get_s, key, key_of, n, s, view_of,
};
use crate::aws::call::random_token;
use crate::aws::classify::AwsError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use kiro_protocol::{Fence, Lease, LeaseError, PortError, ProjectKey, Session, Timestamp};
use std::collections::HashMap;

/// How often an acquire re-reads a row that changed under it before it reports contention.
const ROUNDS: usize = 3;

/// The write that takes a lease for a session, free or taken over: owner, expiry (and its
/// TTL attribute), the acquire token a re-read recognises, and the fence bumped by one.
const TAKE_LEASE: &str = "SET #o = :o, #e = :e, #t = :t, #tok = :tok ADD #f :one";

/// The attribute names of [`TAKE_LEASE`].
fn take_lease_names() -> HashMap<String, String> {
    [
        ("#o", "owner"),
        ("#e", "expires_at"),
        ("#t", "expires_ttl"),
        ("#tok", "acquire_token"),
        ("#f", "fence"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The values of [`TAKE_LEASE`] for `session` with acquire token `tok`.
fn take_lease_values(session: &Session, tok: &str) -> HashMap<String, AttributeValue> {
    [
        (":o", s(&session.id)),
        (":e", n(session.expires_at.millis())),
        (":t", n(session.expires_at.as_secs() + LEASE_TTL_GRACE_S)),
        (":tok", s(tok)),
        (":one", n(1)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What the free-project write found.
enum Free {
    Taken(Lease),
    /// The row as it was when the condition failed (someone holds it).
    Held(Item),
}

/// The old item a failed conditional `UpdateItem` returned (ALL_OLD).
fn old_item(err: &SdkError<UpdateItemError, HttpResponse>) -> Option<Item> {
    match err.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item.clone(),
        _ => None,
    }
}

fn build<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, PortError> {
    r.map_err(|e| PortError::internal(format!("{what}: {e}")))
}

impl DynamoLeaseStore {
    /// `acquire`: take the project when it is free, or take it over when its holder's
    /// session is not live; otherwise `Held`, naming the holder and its session's expiry.
    pub(super) async fn take(
        &self,
        project: &ProjectKey,
        session: &Session,
    ) -> Result<Lease, LeaseError> {
        let mut seen: Option<LeaseError> = None;
        for _ in 0..ROUNDS {
            let row = match self.take_free(project, session).await? {
                Free::Taken(lease) => return Ok(lease),
                Free::Held(row) => row,
            };
            let Some(holder) = get_s(&row, "owner").map(str::to_owned) else {
                continue; // released in between: try the free write again
            };
            let fence = view_of(project, &row).fence;
            let now = self.clock.now();
            let holder_session = self.session_row(&holder).await?;
            let expiry = match &holder_session {
                Some(r) if r.contains_key("ended") => None,
                Some(r) => Some(Timestamp(get_n(r, "expires_at").unwrap_or(0))),
                // A holder without a session row is judged by the row's own expiry.
                None => Some(Timestamp(get_n(&row, "expires_at").unwrap_or(0))),
            };
            if let Some(expires_at) = expiry {
                let held = LeaseError::Held {
                    project: project.clone(),
                    holder: holder.clone(),
                    fence,
                    expires_at,
                };
                if expires_at.plus(self.skew) > now {
                    return Err(held);
                }
                seen = Some(held);
            }
            let cutoff = now.minus(self.skew);
            if self
                .take_over(
                    project,
                    session,
                    &holder,
                    fence,
                    holder_session.is_some(),
                    cutoff,
                )
                .await?
            {
                return Ok(Lease {
                    project: project.clone(),
                    owner: session.id.clone(),
                    fence: Fence(fence.0 + 1),
                });
            }
        }
        Err(seen.unwrap_or_else(|| {
            LeaseError::Port(PortError::transient(format!(
                "the lease row of {project} kept changing during the acquire"
            )))
        }))
    }

    /// The free-project write: ONE `UpdateItem` conditional on the row being absent or
    /// released.
    async fn take_free(&self, project: &ProjectKey, session: &Session) -> Result<Free, LeaseError> {
        let tok = random_token();
        let holder: std::sync::Mutex<Option<Item>> = std::sync::Mutex::new(None);
        let lease_of = |item: &Item| Lease {
            project: project.clone(),
            owner: session.id.clone(),
            fence: view_of(project, item).fence,
        };
        let request = || {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(project, LEASE_SK)))
                .update_expression(TAKE_LEASE)
                .set_expression_attribute_names(Some(take_lease_names()))
                .set_expression_attribute_values(Some(take_lease_values(session, &tok)))
                .condition_expression("attribute_not_exists(#pk) OR attribute_not_exists(#o)")
                .expression_attribute_names("#pk", "pk")
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
        };
        // The holder named by a failed condition (ALL_OLD), kept from the SDK error.
        let keep_holder = |e: &SdkError<UpdateItemError, HttpResponse>, _: &mut AwsError| {
            if let Ok(mut h) = holder.lock() {
                *h = old_item(e);
            }
        };
        let settled = || async {
            let row = self.read(key(project, LEASE_SK)).await?;
            Ok(row
                .filter(|r| get_s(r, "acquire_token") == Some(tok.as_str()))
                .map(|r| lease_of(&r)))
        };
        let res = self
            .write(
                "dynamodb:UpdateItem",
                request,
                keep_holder,
                |out| lease_of(&out.attributes.unwrap_or_default()),
                settled,
            )
            .await;
        match res {
            Ok(l) => Ok(Free::Taken(l)),
            Err(e) if e.condition_failed => {
                let old = holder.lock().ok().and_then(|mut h| h.take());
                let row = match old {
                    Some(r) => Some(r),
                    None => self.lease_row(project).await?,
                };
                match row {
                    Some(r) => Ok(Free::Held(r)),
                    None => Err(LeaseError::Port(e.into_port())),
                }
            }
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }

    /// The takeover: ONE `TransactWriteItems` — the lease row from `holder` at `fence` to
    /// `session` (fence + 1), and the holder's session ended, conditional on its expiry
    /// being at or before `cutoff` (or it being ended already; with no session row, on
    /// the row's own expiry and the session row still being absent, which is then written
    /// ended). `false`: a condition failed (the row or the session changed), nothing was
    /// written.
    async fn take_over(
        &self,
        project: &ProjectKey,
        session: &Session,
        holder: &str,
        fence: Fence,
        holder_has_session: bool,
        cutoff: Timestamp,
    ) -> Result<bool, LeaseError> {
        let tok = random_token();
        let row_condition = if holder_has_session {
            "#o = :h AND #f = :f"
        } else {
            "#o = :h AND #f = :f AND #e <= :cutoff"
        };
        let mut lease = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(project, LEASE_SK)))
            .update_expression(TAKE_LEASE)
            .set_expression_attribute_names(Some(take_lease_names()))
            .set_expression_attribute_values(Some(take_lease_values(session, &tok)))
            .condition_expression(row_condition)
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":f", n(fence.0));
        if !holder_has_session {
            lease = lease.expression_attribute_values(":cutoff", n(cutoff.millis()));
        }
        let lease = build(lease.build(), "transaction update")?;
        let holder_item = if holder_has_session {
            let end = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key_of(holder, SESSION_SK)))
                .update_expression("SET #x = :x")
                .condition_expression(
                    "attribute_exists(#pk) AND (attribute_exists(#x) OR #e <= :cutoff)",
                )
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#x", "ended")
                .expression_attribute_names("#e", "expires_at")
                .expression_attribute_values(":x", AttributeValue::Bool(true))
                .expression_attribute_values(":cutoff", n(cutoff.millis()));
            TransactWriteItem::builder()
                .update(build(end.build(), "transaction update")?)
                .build()
        } else {
            // No session row: write an ended one in its place (so the id is never opened
            // later), conditional on it still being absent. An `Update` rather than a
            // `ConditionCheck`, so the role needs no `dynamodb:ConditionCheckItem`.
            let tombstone = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key_of(holder, SESSION_SK)))
                .update_expression("SET #x = :x, #t = :t")
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#x", "ended")
                .expression_attribute_names("#t", "expires_ttl")
                .expression_attribute_values(":x", AttributeValue::Bool(true))
                .expression_attribute_values(":t", n(cutoff.as_secs() + LEASE_TTL_GRACE_S));
            TransactWriteItem::builder()
                .update(build(tombstone.build(), "transaction update")?)
                .build()
        };
        let items = vec![
            TransactWriteItem::builder().update(lease).build(),
            holder_item,
        ];
        let res = self
            .write(
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
                    let row = self.read(key(project, LEASE_SK)).await?;
                    Ok(row
                        .filter(|r| get_s(r, "acquire_token") == Some(tok.as_str()))
                        .map(|_| ()))
                },
            )
            .await;
        match res {
            Ok(()) => Ok(true),
            Err(e) if e.condition_failed => Ok(false),
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }
}
