//! Sender authentication (issue 3): SPF, DKIM, DMARC and ARC verdicts in `message.auth`.
//!
//! - `common` (tests/common, shared by every test binary): the binary as a child process, a webhook
//!   receiver, an SMTP client, the CLI.
//! - `helpers`: a real UDP DNS server the test controls, test keys/signing (ed25519 generated per run,
//!   RSA from `fixtures/`), and the gateway config with `[auth]`.
//! - `fixture`: an in-process `Authenticator` whose record cache holds the test's DNS records.
//! - `matrix`: the verdict matrix on cache fixtures.
//! - `dns_failure`: dead, closed and slow resolvers give `temperror` within the budget.
//! - `e2e`: through `mxhook serve` with `[auth] dns` pointing at the test's DNS server.
//! - `corpus`: the DKIM-signed real messages of ../shared/corpus.
//! - `bench`: (ignored) what auth costs per message with a warm cache.

#[path = "../common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
#[allow(dead_code)]
mod helpers;

mod bench;
mod corpus;
mod dns_failure;
mod e2e;
mod fixture;
mod matrix;
mod types;
