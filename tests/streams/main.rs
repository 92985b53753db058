//! Streams (issue 17) against the real `mxhook` binary: real clients in Python (`clients/`: httpx
//! for SSE and polling, `websockets` for WebSocket; pinned and installed by `.ci/run`), a real
//! SQLite store, no mocks.
//!
//! - `transports`: each transport connects, reads, disconnects; 50 messages arrive meanwhile; the
//!   reconnect (`Last-Event-ID`, `after`, the iterator) gets exactly those 50, in order, once each;
//!   every event validates against the published schema and keeps its id however often it is read.
//! - `consumers`: two named consumers each see every event, and a restarted one continues where it
//!   acked, with no cursor of its own.
//! - `crash`: a gateway killed with SIGKILL while mail arrives and restarted loses no 250'd
//!   message's stream event, and keeps every consumer's ack.
//! - `access`: no or a wrong token is 401 on every stream route, an unknown stream 404, bad values 400.
//! - `listen`: `mxhook listen --stream --forward-to` POSTs each event signed with the local secret.
//!
//! Needs python3 with httpx and websockets (`pip install httpx==0.28.1 websockets==15.0.1`).

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
mod support;

mod access;
mod consumers;
mod crash;
mod listen;
mod transports;
