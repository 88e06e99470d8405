//! The registry watcher: baton's input. It owns everything about OCI registries:
//!
//! - [`Scanner`]: per app, list tags, apply the blessing rule ([`bless`]), resolve digests
//!   (OCI index, Docker manifest list, OCI and Docker v2 manifests), read creation time /
//!   revision / source ([`manifest`]), verify signatures and attestations ([`verify`]: legacy
//!   cosign signatures in [`cosign`], sigstore bundles in [`sigstore`], keyless certificates in
//!   [`x509`]) and pick the newest; caching so that an unchanged scan costs one request per
//!   repository.
//! - [`RegistryClient`]: the HTTP protocol with anonymous, Basic and Bearer-token auth
//!   ([`auth`]), retries with backoff, and request counters ([`metrics`]).
//! - [`webhook`]: registry webhooks parsed into [`webhook::PushHint`]s.
//! - [`copy`]: copy an image by digest to an environment's `copyTo` registry; [`copier`]:
//!   when it can be copied, copies with backoff, and makes sure pinned copies exist.
//! - [`report`]: the `baton registry scan` table and JSON.
//!
//! The module decides nothing about promotion: it reports what the registries hold.

pub mod auth;
pub mod bless;
pub mod client;
pub mod copier;
pub mod copy;
pub mod cosign;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod repo;
pub mod report;
pub mod scan;
pub mod sigstore;
pub mod verify;
pub mod webhook;
pub mod x509;

pub use auth::{Credential, CredentialStore, Secret};
pub use client::{ClientOptions, RegistryClient, RetryPolicy};
pub use copy::{CopyOptions, CopyReport, copy_image};
pub use cosign::{CosignKey, SignatureStatus};
pub use error::RegistryError;
pub use metrics::{RequestKind, RequestStats};
pub use repo::{Repo, copy_destination};
pub use scan::{AppScan, Candidate, Detail, Rejected, ScanError, ScanOptions, Scanner};
pub use webhook::PushHint;
