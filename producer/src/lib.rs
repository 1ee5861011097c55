//! The producer: board → validate → enqueue.
//!
//! [`Producer::tick`] is the one deterministic step: it reads the board's ready items,
//! validates each, enqueues the good ones (message group = project, deduplication id from
//! the item id and its last update) and moves them to "Queued"; bad items are moved to
//! "Failed" with the validation error as the note. [`Producer::run`] repeats it.
//!
//! Invariants:
//! - nothing from the board is enqueued unless [`BoardItem::validate`] accepted it;
//! - an item is sent before it is marked Queued: a crash in between re-sends it on the
//!   next tick, and the deduplication id makes that second send harmless;
//! - one bad item, or one failed send, never stops the others; a failed send leaves the
//!   item Ready so the next tick tries again.

use kiro_protocol::ids::quote_for_display;
use kiro_protocol::ports::queue::standard_attributes;
use kiro_protocol::{
    Board, BoardItem, Clock, Envelope, ItemId, ItemStatus, OutgoingMessage, PortError, WorkQueue,
};
use kiro_telemetry::otel::{self, keys};
use opentelemetry::KeyValue;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::{info, instrument, warn};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A tick that could not run at all.
#[derive(Debug, Error)]
pub enum ProducerError {
    /// The board could not be read.
    #[error("cannot read the board: {0}")]
    Board(#[source] PortError),
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Items sent as new messages and marked Queued.
    pub enqueued: Vec<ItemId>,
    /// Items whose send was a duplicate within the queue's deduplication window (nothing
    /// new was enqueued); they are marked Queued too.
    pub duplicates: Vec<ItemId>,
    /// Items that failed validation: (item id quoted for display, the one-line error).
    pub rejected: Vec<(String, String)>,
    /// Items whose send (or status change) failed; they stay Ready for the next tick,
    /// or are already in the queue and merely not yet marked Queued.
    pub errors: Vec<(ItemId, String)>,
}

impl TickReport {
    /// Whether some item could not be handled because of the infrastructure (queue or
    /// board), as opposed to being rejected for bad input.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

impl fmt::Display for TickReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "enqueued {}, duplicates {}, rejected {}",
            self.enqueued.len(),
            self.duplicates.len(),
            self.rejected.len()
        )?;
        if !self.errors.is_empty() {
            write!(f, ", errors {}", self.errors.len())?;
        }
        Ok(())
    }
}

/// The producer: a board, a queue and a clock.
#[derive(Debug, Clone)]
pub struct Producer {
    board: Arc<dyn Board>,
    queue: Arc<dyn WorkQueue>,
    clock: Arc<dyn Clock>,
}

impl Producer {
    pub fn new(board: Arc<dyn Board>, queue: Arc<dyn WorkQueue>, clock: Arc<dyn Clock>) -> Self {
        Producer {
            board,
            queue,
            clock,
        }
    }

    /// Read the board once and enqueue every valid ready item.
    #[instrument(skip_all)]
    pub async fn tick(&self) -> Result<TickReport, ProducerError> {
        let items = self
            .board
            .ready_items()
            .await
            .map_err(ProducerError::Board)?;
        let mut report = TickReport::default();
        for raw in items {
            self.handle(raw, &mut report).await;
        }
        info!(
            enqueued = report.enqueued.len(),
            duplicates = report.duplicates.len(),
            rejected = report.rejected.len(),
            errors = report.errors.len(),
            "producer tick done"
        );
        Ok(report)
    }

    /// Validate one ready item and enqueue it, or reject it.
    #[instrument(
        skip_all,
        fields(item = %quote_for_display(&raw.id), project = %quote_for_display(&raw.project))
    )]
    async fn handle(&self, raw: BoardItem, report: &mut TickReport) {
        let item = match raw.validate() {
            Ok(item) => item,
            Err(invalid) => {
                let error = invalid.to_string();
                warn!(
                    item = %invalid.item,
                    field = invalid.error.field,
                    "rejected board item: {error}"
                );
                if let Err(e) = self
                    .board
                    .set_status(&raw.id, ItemStatus::Failed, Some(&error))
                    .await
                {
                    warn!(item = %invalid.item, "cannot mark rejected item Failed: {e}");
                }
                report.rejected.push((invalid.item, error));
                return;
            }
        };

        let id = item.id.clone();
        // The item's trace starts here: a root span (not a child of the tick), whose
        // context travels in the message as `traceparent` and `AWSTraceHeader`.
        let dest = self.queue.destination();
        let span = tracing::info_span!(
            parent: None,
            "send",
            otel.name = %format!("send {}", dest.name),
            otel.kind = "producer",
            trace_id = tracing::field::Empty,
            kiro.project = %item.project,
            kiro.item = %item.id,
        );
        otel::set_messaging(&span, &dest, "send", "send");
        span.set_attribute(keys::MESSAGING_GROUP, item.project.to_string());
        otel::record_trace_id(&span);
        let trace = otel::inject(&span);
        let msg = OutgoingMessage {
            group: item.project.clone(),
            dedup: item.dedup_id(),
            attributes: standard_attributes(&trace),
            body: Envelope::new(item, trace.clone(), self.clock.now()).encode(),
            trace,
        };
        self.send(msg, id, report).instrument(span).await;
    }

    /// Send one message and mark its item Queued, inside the item's `send` span.
    async fn send(&self, msg: OutgoingMessage, id: ItemId, report: &mut TickReport) {
        let span = tracing::Span::current();
        let group = msg.group.clone();
        let sent = match self.queue.send(msg).await {
            Ok(sent) => sent,
            Err(e) => {
                warn!(item = %id, project = %group, "cannot enqueue item, it stays ready: {e}");
                span.set_status(opentelemetry::trace::Status::error(format!(
                    "send failed: {e}"
                )));
                report.errors.push((id, format!("send failed: {e}")));
                return;
            }
        };
        span.set_attribute(keys::MESSAGING_MESSAGE_ID, sent.message_id.to_string());
        if sent.duplicate {
            span.add_event("duplicate", vec![KeyValue::new("duplicate", true)]);
        }
        if let Err(e) = self
            .board
            .set_status(id.as_str(), ItemStatus::Queued, None)
            .await
        {
            // Already in the queue: the next tick re-sends it and the queue deduplicates.
            warn!(item = %id, "enqueued, but cannot mark the item Queued: {e}");
            report.errors.push((id, format!("mark queued failed: {e}")));
            return;
        }
        let (what, list) = if sent.duplicate {
            ("already enqueued (duplicate)", &mut report.duplicates)
        } else {
            ("enqueued", &mut report.enqueued)
        };
        info!(item = %id, project = %group, message_id = %sent.message_id, "{what}");
        list.push(id);
    }

    /// Tick every `period` until `cancel` fires, handing each tick's result to
    /// `on_tick`. A tick that fails is reported and the loop goes on (the board file may
    /// be mid-edit, the queue briefly unavailable).
    pub async fn run(
        &self,
        period: Duration,
        cancel: CancellationToken,
        mut on_tick: impl FnMut(&Result<TickReport, ProducerError>) + Send,
    ) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                _ = interval.tick() => {
                    let result = self.tick().await;
                    on_tick(&result);
                }
            }
        }
        info!("producer stopped");
    }
}
