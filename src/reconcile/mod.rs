//! The reconciler: applies an environment's rendered objects to its cluster with server-side
//! apply, prunes what the environment no longer renders, assesses health and corrects drift.
//! It reads rendered objects and writes a [`Report`]; rendering and reporting to the forge
//! happen at its edges.

pub mod diff;
pub mod health;
pub mod object;
pub mod order;
