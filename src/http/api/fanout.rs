//! A shared tail for each stream's readers (SSE, WebSocket). Why: a reader at the tail reads each
//! new event as soon as it is committed, so with N readers each event used to be read from SQLite
//! (through the one readers' connection, one blocking task per reader) and its body built N times.
//! Here the first reader that reaches the ring's tip reads the next events once (single-flight: the
//! others wait for it, then take its bodies), and every reader at the tail shares those bodies
//! (`Arc<str>`): the cost per event no longer grows with the number of readers.
//!
//! The ring holds every event of its stream with a cursor in `(start, tip]`, in order, bounded by
//! count and bytes (the oldest leave first, moving `start`). A reader whose cursor is in
//! `[start, tip)` reads from the ring; one at `tip` fills it; one before `start` (a backlog) or past
//! `tip` (an `after` beyond the end) reads from the store as before. The ring's events are the
//! store's, in the store's order, with the same bodies: a reader cannot tell where a page came from
//! (except that an event retention just deleted may still be handed out from the ring once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::ApiError;
use super::streams::{Read, blocking, build};
use crate::mail::EventType;
use crate::store::Store;

/// Events read from the store per fill.
const FILL: usize = 128;
/// Most events a ring keeps.
const MAX_EVENTS: usize = 1024;
/// Most bytes of bodies a ring keeps (a body larger than this is handed to the readers waiting for
/// it, then only readers at the tip share it: the next fill evicts it).
const MAX_BYTES: usize = 16 << 20;

/// The rings of the streams, made on first use.
#[derive(Default)]
pub struct Fanout {
    rings: Mutex<HashMap<String, Arc<Ring>>>,
}

impl Fanout {
    pub fn ring(&self, stream: &str) -> Arc<Ring> {
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        rings.entry(stream.to_string()).or_insert_with(|| Arc::new(Ring::new(stream, MAX_EVENTS, MAX_BYTES))).clone()
    }
}

/// One stream's recent events, shared by its readers.
pub struct Ring {
    stream: String,
    max_events: usize,
    max_bytes: usize,
    state: Mutex<State>,
    /// Held while filling: one store read per new page of events, however many readers wait.
    fill: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// `(start, tip)`: every event with a cursor in `(start, tip]` is in `events`. None until the
    /// first fill, which starts the ring at the stream's newest event.
    covered: Option<(i64, i64)>,
    events: VecDeque<Shared>,
    bytes: usize,
}

#[derive(Clone)]
struct Shared {
    cursor: i64,
    event_type: EventType,
    body: Arc<str>,
}

impl Ring {
    fn new(stream: &str, max_events: usize, max_bytes: usize) -> Self {
        Ring {
            stream: stream.to_string(),
            max_events: max_events.max(1),
            max_bytes,
            state: Mutex::default(),
            fill: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `limit` events after `after` (only `types`, when given) and where the next read
    /// starts, as `stream_read` would give them; None: `after` is not in the ring's reach (read the
    /// store). An empty page means the stream had nothing after `after` when read, after the call
    /// began: the caller may wait for the next commit.
    pub(super) async fn read(
        &self,
        store: &Arc<Store>,
        after: i64,
        limit: usize,
        types: Option<&[EventType]>,
    ) -> Result<Option<(Vec<Read>, i64)>, ApiError> {
        match self.cached(after, limit, types) {
            Lookup::Page(page, next) => return Ok(Some((page, next))),
            Lookup::Outside => return Ok(None),
            Lookup::AtTip => {}
        }
        let _filling = self.fill.lock().await;
        // Whoever held the lock may have filled past `after` already: then no store read here.
        match self.cached(after, limit, types) {
            Lookup::Page(page, next) => return Ok(Some((page, next))),
            Lookup::Outside => return Ok(None),
            Lookup::AtTip => {}
        }
        let from = {
            let state = self.state();
            state.covered.map(|(_, tip)| tip)
        };
        let (s, name) = (store.clone(), self.stream.clone());
        let (items, next, newest) = blocking(move || {
            // The first fill starts at the stream's newest event: older ones are a backlog.
            let from = match from {
                Some(tip) => tip,
                None => s.stream_last(&name)?,
            };
            let page = s.stream_read(&name, from, FILL, None)?;
            let types: Vec<EventType> = page.items.iter().map(|i| i.event.event_type).collect();
            let reads = build(&name, page.items)?;
            Ok((reads.into_iter().zip(types).collect::<Vec<_>>(), page.next, from))
        })
        .await?;
        {
            let mut state = self.state();
            let (start, _) = *state.covered.get_or_insert((newest, newest));
            for (r, event_type) in items {
                state.bytes += r.body.len();
                state.events.push_back(Shared { cursor: r.cursor, event_type, body: r.body });
            }
            let mut start = start;
            while state.events.len() > self.max_events || (state.bytes > self.max_bytes && !state.events.is_empty()) {
                let old = state.events.pop_front().expect("not empty");
                state.bytes -= old.body.len();
                start = old.cursor;
            }
            state.covered = Some((start, next));
        }
        match self.cached(after, limit, types) {
            Lookup::Page(page, next) => Ok(Some((page, next))),
            // Nothing new since `after`, read after the caller began.
            Lookup::AtTip => Ok(Some((Vec::new(), after))),
            Lookup::Outside => Ok(None),
        }
    }

    fn cached(&self, after: i64, limit: usize, types: Option<&[EventType]>) -> Lookup {
        let state = self.state();
        let Some((start, tip)) = state.covered else {
            return Lookup::AtTip;
        };
        if after == tip {
            return Lookup::AtTip;
        }
        if after < start || after > tip {
            return Lookup::Outside;
        }
        // The first event after `after`: the ring is in cursor order.
        let first = state.events.partition_point(|e| e.cursor <= after);
        let mut page = Vec::new();
        for e in state.events.range(first..) {
            if types.is_none_or(|t| t.contains(&e.event_type)) {
                if page.len() == limit {
                    // As `stream_read`: the next read starts after the last event handed out.
                    let next = page.last().map_or(after, |r: &Read| r.cursor);
                    return Lookup::Page(page, next);
                }
                page.push(Read { cursor: e.cursor, body: e.body.clone() });
            }
        }
        // Every event up to the tip was looked at (those of other types are skipped for good).
        Lookup::Page(page, tip)
    }
}

enum Lookup {
    Page(Vec<Read>, i64),
    AtTip,
    Outside,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::api::streams::Follower;
    use crate::store::tests::message;

    fn add(store: &Store, id: &str) {
        let streams = vec!["dev".to_string()];
        let m = crate::store::NewMessage { streams: &streams, ..message(id, 1_000, &[], &[]) };
        store.ingest(&m).unwrap();
    }

    /// Many readers following at once, while events are written: each sees every event exactly
    /// once, in order, with the body the store gives; with a ring so small that readers fall behind
    /// it (and read the store) as well as with the default one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_concurrent_readers_each_see_every_event_once_in_order() {
        for max_events in [MAX_EVENTS, 3] {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Store::open(dir.path()).unwrap());
            add(&store, "msg_before");
            let ring = Arc::new(Ring::new("dev", max_events, MAX_BYTES));
            let (_stop, stopping) = tokio::sync::watch::channel(false);
            const EVENTS: usize = 150;
            let mut readers = tokio::task::JoinSet::new();
            for i in 0..100 {
                let mut f = Follower::new(store.clone(), ring.clone(), "dev", 0, None, stopping.clone());
                readers.spawn(async move {
                    let mut got = Vec::new();
                    while got.len() < EVENTS + 1 {
                        let r = f.next().await.unwrap().unwrap();
                        got.push((r.cursor, r.body));
                        if i % 7 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    got
                });
            }
            let writer = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    for n in 0..EVENTS {
                        add(&store, &format!("msg_{n}"));
                    }
                })
            };
            writer.await.unwrap();
            let want = build("dev", store.stream_read("dev", 0, EVENTS + 10, None).unwrap().items).unwrap();
            assert_eq!(want.len(), EVENTS + 1);
            while let Some(got) = readers.join_next().await {
                let got = got.unwrap();
                assert_eq!(got.len(), want.len());
                for ((c, body), w) in got.iter().zip(&want) {
                    assert_eq!((*c, &**body), (w.cursor, &*w.body));
                }
            }
            let state = ring.state();
            assert!(state.events.len() <= max_events);
        }
    }

    /// A type filter reads from the ring as from the store: the same events, the same next cursor.
    #[tokio::test]
    async fn a_filtered_page_from_the_ring_is_the_stores() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let ring = Ring::new("dev", MAX_EVENTS, MAX_BYTES);
        assert_eq!(ring.read(&store, 0, 10, None).await.unwrap().map(|(p, n)| (p.len(), n)), Some((0, 0)));
        for n in 0..5 {
            add(&store, &format!("msg_{n}"));
        }
        let (all, next) = ring.read(&store, 0, 2, None).await.unwrap().unwrap();
        assert_eq!((all.len(), next), (2, all[1].cursor));
        let (rest, tip) = ring.read(&store, next, 10, None).await.unwrap().unwrap();
        assert_eq!(rest.len(), 3);
        assert_eq!(tip, store.stream_last("dev").unwrap());
        let (none, skipped_to) = ring.read(&store, 0, 10, Some(&[EventType::Bounced])).await.unwrap().unwrap();
        assert!(none.is_empty());
        assert_eq!(skipped_to, tip);
        // Past the tip, or before a ring that starts later: the store's business.
        assert!(ring.read(&store, tip + 5, 10, None).await.unwrap().is_none());
    }
}
