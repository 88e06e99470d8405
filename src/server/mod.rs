//! The HTTP surface (axum): webhooks in, health and metrics out.

pub mod github;
