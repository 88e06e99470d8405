//! The config-repo PR check (`baton/validate`): every open pull request to the config branch,
//! whoever opened it, is validated (`baton validate`) and every environment rendered at its
//! head. baton posts the commit status `baton/validate` on the head (failure names
//! `file:line` and why) and keeps one summary comment per PR, edited in place, that lists
//! per environment the objects added, changed and removed and the images that move, compared
//! with the merge base. A head baton already reported on is not checked again, so idle passes
//! write nothing and a restart never repeats a comment.
//!
//! [`diff`] and [`summary`] are pure; [`Checker`] does the I/O. [`rendered_diff`] gives the
//! engine the rendered manifest diff of one environment for promotion PR bodies.
//! See `docs/prcheck.md`.

mod check;
pub mod diff;
pub mod gates;
pub mod guard;
mod merge_group;
pub mod summary;

pub use check::{CheckError, CheckOutcome, Checker, rendered_diff};
pub use merge_group::parse_group_ref;

/// The commit status context (what `requiredChecks: [validate]` waits for).
pub const CONTEXT: &str = "baton/validate";
