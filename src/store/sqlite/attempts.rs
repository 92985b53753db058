//! Finishing an attempt: its row in `attempts` and the delivery moved on to its next state (or kept
//! pending when the CLI asked for a retry meanwhile), written in the next group commit (commit.rs).

use anyhow::Context;
use rusqlite::params;

use super::commit::Work;
use super::{Delivery, Sqlite};
use crate::mail::{DeliveryStatus, NextState};
use crate::time::now_ms;

#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

impl Sqlite {
    /// Records one attempt and moves the delivery on, in the next group commit.
    pub fn finish_attempt(&self, d: &Delivery, a: &Attempt, next: &NextState) -> anyhow::Result<()> {
        let record = AttemptRecord {
            delivery_id: d.id.clone(),
            retry_requested_at: d.retry_requested_at,
            step: d.step,
            attempt: a.clone(),
            next: *next,
        };
        self.commit(record).context("recording a delivery attempt")?;
        // Only now may a claim see it again (see claim_due).
        self.claimed().remove(&d.id);
        Ok(())
    }
}

/// A finished attempt as queued for the group commit.
pub(super) struct AttemptRecord {
    pub(super) delivery_id: String,
    /// The delivery's `retry_requested_at` when it was claimed: a CLI request made since wins.
    pub(super) retry_requested_at: Option<i64>,
    pub(super) step: i64,
    pub(super) attempt: Attempt,
    pub(super) next: NextState,
}

/// The attempt's row, and the delivery moved on to its next state.
/// An attempt's outcome is no promise to anyone (see `commit::write_batch`).
impl Work for AttemptRecord {
    fn write(&self, tx: &rusqlite::Connection) -> anyhow::Result<()> {
        record_attempt(tx, self)
    }
    fn is_promise(&self) -> bool {
        false
    }
    fn is_spooled(&self) -> bool {
        false
    }
}

fn record_attempt(tx: &rusqlite::Connection, r: &AttemptRecord) -> anyhow::Result<()> {
    let a = &r.attempt;
    tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, http_status, error, response_body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        r.delivery_id,
        a.attempt,
        a.started_at,
        a.duration_ms,
        a.http_status,
        a.error,
        a.response_body
    ])?;
    let requested: Option<i64> = tx
        .prepare_cached("SELECT retry_requested_at FROM deliveries WHERE id = ?1")?
        .query_row([&r.delivery_id], |row| row.get(0))?;
    let (status, step, at, keep_request) = if requested != r.retry_requested_at {
        // The CLI asked for another attempt while this one was in flight: honour it.
        (DeliveryStatus::Pending, r.step, requested, requested)
    } else {
        match r.next {
            NextState::Succeeded => (r.next.status(), r.step, None, None),
            NextState::Retry { at, step } => (r.next.status(), step, Some(at), None),
            NextState::Failed { step } => (r.next.status(), step, None, None),
        }
    };
    tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, step = ?3, next_attempt_at = ?4, retry_requested_at = ?5,
                attempts = ?6, last_status = ?7, last_error = ?8, in_flight = 0, updated_at = ?9
         WHERE id = ?1",
    )?
    .execute(params![
        r.delivery_id,
        status.as_str(),
        step,
        at,
        keep_request,
        a.attempt,
        a.http_status,
        a.error,
        now_ms()
    ])?;
    Ok(())
}
