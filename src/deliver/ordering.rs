//! `[endpoints.NAME] ordering`: whether an endpoint's events may overtake each other. The scheduler
//! (`deliver/mod.rs`) and the claim (`store/queue.rs`) apply it; the config reads it.

use serde::Deserialize;

#[derive(Debug, Deserialize, serde::Serialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// Up to `concurrency` requests at once; a failing event is retried beside the later ones.
    #[default]
    Concurrent,
    /// One request at a time, in arrival order: an event waits until every older one of the
    /// endpoint has succeeded or failed for good (an app that needs "created" before "updated").
    Fifo,
}
