//! Local stand-ins for the services baton talks to, served over real HTTP on 127.0.0.1 with
//! ephemeral ports, so that tests and `baton sandbox` exercise the production client code
//! (octocrab, kube `Client`, oci-client, git2) unchanged. Production code never uses this crate.
#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod cluster;
pub mod contract;
pub mod forge;
pub mod git;
pub mod registry;
pub mod server;

pub use server::Server;
