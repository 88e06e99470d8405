//! What baton's integration tests (`tests/`) and benches (`benches/`) share, so that a bench
//! measures the same world a test proves:
//!
//! - [`example`]: the project's own example config repo (files, a copy on disk, a forge repo
//!   seeded with it) and the `git` CLI;
//! - [`promote`]: the promotion world: the GitHub stand-in holding the example repo, the
//!   people its pipeline names, releases and deployments as plain values, and a brand-new
//!   engine per pass;
//! - [`net`]: free loopback ports, a bounded HTTP GET, and polling a condition with a deadline.
//!
//! Not published; production code never depends on it.
#![forbid(unsafe_code)]

pub mod example;
pub mod net;
pub mod promote;
