//! The first must-show: three gateways on one database take 3,000 messages from concurrent
//! SMTP clients (round robin over the members up) while one of them, in turn, is SIGKILLed every few
//! seconds and restarted. Every message that got a 250 reaches the receiver, verified by the stock
//! Standard Webhooks verifier, every copy with one event id; nothing is left pending or leased.
//! Duplicates (an event sent more than once: a kill between the POST and the record of its outcome)
//! are allowed, at-least-once, and counted and printed. Messages that got no 250 are not counted as
//! acknowledged (they may still arrive: stored, but the connection died before the reply).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

/// Acknowledged messages the test waits for before it stops the load.
const TARGET: usize = 3_000;
/// Concurrent SMTP clients.
const SENDERS: usize = 32;
/// The lease: a killed member's claims go to the others this long after its last renewal (its
/// restart gives them back at once: its run file names its previous run).
const LEASE: &str = "3s";

#[test]
fn three_gateways_take_3000_messages_while_one_is_sigkilled_every_few_seconds_and_lose_none() {
    let _turn = turn();
    let seed = seed("churn");
    let mut rng = Rng::new(seed);
    let begun = Instant::now();
    // A cluster of its own without fsync: the gateways are killed here, never the database, and
    // durability across a database crash is not what this test is about (speed is: 3,000 messages).
    let pg = postgres::PgCluster::start(false).unwrap_or_else(|e| panic!("a throwaway PostgreSQL cluster: {e}"));
    let mut c = Cluster::start(&pg, LEASE, |cfg| {
        cfg.endpoint("app").concurrency = Some(16);
    });
    let load = Load::start(&c.up, SENDERS, seed, Some(TARGET));

    let mut kills = 0;
    let mut tally = Tally::default();
    let mut progress = (load.acked(), Instant::now());
    while load.acked() < TARGET {
        // Deliberate: the churn's rhythm, a kill every 1.5 to 3 s (sooner done when the target is met).
        let pause = Duration::from_millis(rng.range(1_500, 3_000));
        if poll(pause, || load.acked() >= TARGET) {
            break;
        }
        let member = kills % MEMBERS;
        c.kill(member);
        kills += 1;
        // Deliberate: down a while (the others take the load), 0.2 to 1.5 s.
        std::thread::sleep(Duration::from_millis(rng.range(200, 1_500)));
        c.restart(member);
        if load.acked() > progress.0 {
            progress = (load.acked(), Instant::now());
        }
        // Checked as they come: the stock verifier refuses a signature older than 5 minutes.
        tally.update(&c.h.rx);
        eprintln!(
            "churn: {:.0} s, {kills} kills, {} acknowledged, {} requests",
            begun.elapsed().as_secs_f64(),
            load.acked(),
            tally.requests()
        );
        assert!(
            progress.1.elapsed() < Duration::from_secs(60),
            "no message acknowledged for 60 s ({} so far, {kills} kills; seed {seed})\n{}",
            progress.0,
            c.h.logs()
        );
    }
    let sent = load.finish();
    let load_time = begun.elapsed();
    assert!(kills >= MEMBERS, "each member killed at least once: only {kills} kills before the target (seed {seed})");

    let acked = acked_ids(&sent);
    assert_eq!(acked.len(), sent.iter().filter(|s| matches!(s.outcome, Outcome::Acked(_))).count(), "ids unique");
    assert!(acked.len() >= TARGET);
    tally.wait_all(&c, &acked, Duration::from_secs(120));
    // Nothing left behind: messages stored without a 250 (a kill before the reply) are delivered
    // too, no delivery pending, failed or still leased.
    let mut statuses = BTreeMap::new();
    c.h.wait_until(Duration::from_secs(60), "every delivery to succeed", || {
        statuses = c.delivery_statuses();
        statuses.keys().all(|s| s == "succeeded")
    });
    let leased = c.rows("SELECT COUNT(*) FROM deliveries WHERE lease_owner IS NOT NULL OR lease_until IS NOT NULL");
    assert_eq!(leased, [["0"]], "a succeeded delivery keeps no lease");
    tally.update(&c.h.rx);
    let stored: usize = statuses.values().sum();
    assert_eq!(tally.by_message.len(), stored, "each stored message delivered (one endpoint each)");

    let (dup_events, extra) = tally.duplicates();
    // Copies whose outcome was recorded too: sent by two live gateways (a lease lapsed while its
    // gateway still ran: a renewal late under load), not lost with a killed one.
    let recorded = c.rows(
        "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT COUNT(*) AS n FROM attempts
         WHERE http_status BETWEEN 200 AND 299 GROUP BY delivery_id) per_delivery",
    );
    let recorded_extra: usize = recorded[0][0].parse().unwrap();
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &sent {
        if let Outcome::Refused(code, _) = s.outcome {
            *refused.entry(code).or_default() += 1;
        }
    }
    let broken = sent.iter().filter(|s| matches!(s.outcome, Outcome::Broken)).count();
    eprintln!(
        "churn figures (seed {seed}): {MEMBERS} gateways, lease {LEASE}, {SENDERS} SMTP clients, {kills} SIGKILLs; \
         {} transactions: {} acknowledged, {broken} broken by a kill, refused {refused:?}; {} messages stored, all \
         delivered ({} without a 250); {} requests, {dup_events} events delivered more than once ({extra} extra \
         copies, {recorded_extra} of them with their outcome recorded); load phase {:.1} s, until all delivered {:.1} s",
        sent.len(),
        acked.len(),
        stored,
        stored.saturating_sub(acked.len()),
        tally.requests(),
        load_time.as_secs_f64(),
        begun.elapsed().as_secs_f64(),
    );
}
