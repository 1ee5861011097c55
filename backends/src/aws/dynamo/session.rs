//! The session rows of the DynamoDB lease store: open, renew (the one write of a
//! consumer's heartbeat) and end.
//!
//! Invariant: a session row is created once (`attribute_not_exists(pk)`), renewed only
//! while it has no `ended` attribute, and never loses `ended` once set; a write whose
//! result is unknown is settled by a consistent re-read (open token, expiry, ended flag).

use super::{DynamoLeaseStore, LEASE_TTL_GRACE_S, SESSION_SK, get_n, get_s, key_of, n, s};
use crate::aws::call::random_token;
use kiro_protocol::{LeaseError, PortError, Session};
use std::time::Duration;

impl DynamoLeaseStore {
    /// `open_session`: one conditional `PutItem`.
    pub(super) async fn open_row(&self, id: &str, ttl: Duration) -> Result<Session, LeaseError> {
        let session = Session {
            id: id.to_owned(),
            expires_at: self.clock.now().plus(ttl),
        };
        let tok = random_token();
        let mut item = key_of(id, SESSION_SK);
        item.insert("expires_at".into(), n(session.expires_at.millis()));
        item.insert(
            "expires_ttl".into(),
            n(session.expires_at.as_secs() + LEASE_TTL_GRACE_S),
        );
        item.insert("open_token".into(), s(&tok));
        let res = self
            .write(
                "dynamodb:PutItem",
                || {
                    self.client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(item.clone()))
                        .condition_expression("attribute_not_exists(#pk)")
                        .expression_attribute_names("#pk", "pk")
                        .send()
                },
                |_, _| {},
                |_| session.clone(),
                || async {
                    let row = self.read(key_of(id, SESSION_SK)).await?;
                    Ok(row
                        .filter(|r| get_s(r, "open_token") == Some(tok.as_str()))
                        .map(|_| session.clone()))
                },
            )
            .await;
        match res {
            Ok(s) => Ok(s),
            Err(e) if e.condition_failed => Err(LeaseError::Port(PortError::input(format!(
                "session id {id} was already used"
            )))),
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }

    /// `renew_session`: one `UpdateItem` of the session row, while it is not ended.
    pub(super) async fn renew_row(
        &self,
        session: &Session,
        ttl: Duration,
    ) -> Result<Session, LeaseError> {
        let renewed = Session {
            id: session.id.clone(),
            expires_at: self.clock.now().plus(ttl),
        };
        let at = renewed.expires_at.millis();
        let res = self
            .write(
                "dynamodb:UpdateItem",
                || {
                    self.client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(key_of(&session.id, SESSION_SK)))
                        .update_expression("SET #e = :e, #t = :t")
                        .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#x)")
                        .expression_attribute_names("#pk", "pk")
                        .expression_attribute_names("#x", "ended")
                        .expression_attribute_names("#e", "expires_at")
                        .expression_attribute_names("#t", "expires_ttl")
                        .expression_attribute_values(":e", n(at))
                        .expression_attribute_values(
                            ":t",
                            n(renewed.expires_at.as_secs() + LEASE_TTL_GRACE_S),
                        )
                        .send()
                },
                |_, _| {},
                |_| renewed.clone(),
                || async {
                    let row = self.read(key_of(&session.id, SESSION_SK)).await?;
                    Ok(row
                        .filter(|r| !r.contains_key("ended") && get_n(r, "expires_at") == Some(at))
                        .map(|_| renewed.clone()))
                },
            )
            .await;
        match res {
            Ok(s) => Ok(s),
            Err(e) if e.condition_failed => Err(LeaseError::SessionLost {
                session: session.id.clone(),
            }),
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }

    /// `end_session`: one `UpdateItem` setting `ended` (idempotent).
    pub(super) async fn end_row(&self, session: &Session) -> Result<(), LeaseError> {
        let res = self
            .write(
                "dynamodb:UpdateItem",
                || {
                    self.client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(key_of(&session.id, SESSION_SK)))
                        .update_expression("SET #x = :x")
                        .condition_expression("attribute_exists(#pk)")
                        .expression_attribute_names("#pk", "pk")
                        .expression_attribute_names("#x", "ended")
                        .expression_attribute_values(
                            ":x",
                            aws_sdk_dynamodb::types::AttributeValue::Bool(true),
                        )
                        .send()
                },
                |_, _| {},
                |_| (),
                || async {
                    let row = self.read(key_of(&session.id, SESSION_SK)).await?;
                    Ok(row.filter(|r| r.contains_key("ended")).map(|_| ()))
                },
            )
            .await;
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.condition_failed => Err(LeaseError::SessionLost {
                session: session.id.clone(),
            }),
            Err(e) => Err(LeaseError::Port(e.into_port())),
        }
    }
}
