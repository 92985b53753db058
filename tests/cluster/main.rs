//! Several gateways, one queue (issue 20): three real `mxhook serve` processes on 127.0.0.1, each with
//! its own SMTP and HTTP ports and data_dir, all on one PostgreSQL database of a throwaway cluster
//! (tests/common/postgres.rs) whatever `MXHOOK_TEST_BACKEND` says, delivering to one real receiver
//! that checks every request with the stock Standard Webhooks verifier.
//!
//! - `support`: the cluster (start, SIGKILL, restart, psql), the SMTP load with each message's
//!   outcome, and the tally of what the receiver got.
//! - `churn`: 3,000 messages over the three while one of them is SIGKILLed and restarted every few
//!   seconds: every acknowledged message delivered, duplicates counted and printed.
//! - `dead_gateway`: a gateway killed for good while its attempts are in flight: the others send
//!   them after its lease, same event ids; its links work on the others; the CLI sees every message.
//! - `outage`: PostgreSQL stopped for 10 s under SMTP load: 451 4.3.0 meanwhile, nothing
//!   acknowledged lost, service back without restarting the gateways.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

mod churn;
mod dead_gateway;
mod outage;
mod support;
