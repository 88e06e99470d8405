//! The config repo: lossless YAML edits (`edit`), digest bumps planned against a checkout
//! (`bump`), Git operations through git2 (`repo`), SSH signatures on the commits it makes (`sign`), and release history from commit
//! trailers (`history`).

pub mod bump;
pub mod edit;
pub mod files;
pub mod history;
pub mod repo;
pub mod sign;
pub mod trailers;
