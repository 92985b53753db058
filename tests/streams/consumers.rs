//! Named consumers: the gateway keeps each one's acked place, so two consumers of one stream each
//! see every event, and one that restarts continues after what it acked, with no cursor of its own.

use crate::support::*;

#[test]
fn two_named_consumers_each_see_every_event_and_resume_where_they_acked() {
    let h = harness();
    let gw = h.start();
    let batch1 = send_many(&gw, "one", 10);
    send(&gw, "end-1");
    // w1 over WebSocket (ack frames), w2 by polling (iterators), w3 over SSE (POST ack).
    let w1 = client(&gw, "ws", &["--consumer", "w1", "--until-subject", "end-1"]);
    let w2 = client(&gw, "poll", &["--consumer", "w2", "--until-subject", "end-1", "--limit", "4"]);
    let w3 = client(&gw, "sse", &["--consumer", "w3", "--until-subject", "end-1"]);
    for run in [&w1, &w2, &w3] {
        assert_eq!(&run.message_ids()[..10], batch1, "every consumer sees every event");
        assert_eq!(run.events.len(), 11);
    }

    let batch2 = send_many(&gw, "two", 7);
    let end2 = send(&gw, "end-2");
    // Restarted with nothing but their names: each continues after what it acked.
    for (client_name, consumer) in [("ws", "w1"), ("poll", "w2"), ("sse", "w3")] {
        let run = client(&gw, client_name, &["--consumer", consumer, "--until-subject", "end-2"]);
        let ids = run.message_ids();
        assert_eq!(&ids[..7], batch2, "{consumer} resumed after its ack");
        assert_eq!(ids[7], end2);
        assert_eq!(ids.len(), 8, "{consumer}: nothing it acked came again");
    }
    drop(h);
}
