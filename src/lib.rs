//! baton: a GitOps release-promotion bot and reconciler.
//!
//! The modules follow the flow in DESIGN.md: `registry` finds blessed digests, `promote`
//! decides, `gitrepo` edits and pushes the config repo, `forge` talks to GitHub, `reconcile`
//! applies merged state to clusters. `config` holds the runtime and pipeline configuration;
//! `cli` is the command-line surface and only wires the others together.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod dora;
pub mod engine;
pub mod forge;
pub mod gitrepo;
pub mod image;
pub mod leader;
pub mod logging;
pub mod notify;
pub mod prcheck;
pub mod promote;
pub mod reconcile;
pub mod registry;
pub mod render;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod state;
pub mod tls;
pub mod yaml;
