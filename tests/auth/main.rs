//! Sender authentication (issue 3): SPF, DKIM, DMARC and ARC verdicts in `message.auth`.
//!
//! - `helpers`: the binary as a child process, a webhook receiver, an SMTP client, a real UDP DNS
//!   server the test controls, and test keys/signing (ed25519 generated per run, RSA from `fixtures/`).
//! - `fixture`: an in-process `Authenticator` whose record cache holds the test's DNS records.
//! - `matrix`: the verdict matrix on cache fixtures.
//! - `dns_failure`: dead, closed and slow resolvers give `temperror` within the budget.
//! - `e2e`: through `mxhook serve` with `[auth] dns` pointing at the test's DNS server.
//! - `corpus`: the DKIM-signed real messages of ../shared/corpus.
//! - `bench`: (ignored) what auth costs per message with a warm cache.

mod helpers;

mod bench;
mod corpus;
mod dns_failure;
mod e2e;
mod fixture;
mod matrix;
