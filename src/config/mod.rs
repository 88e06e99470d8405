//! Configuration: the runtime config of the bot (`baton.yaml`) and the pipeline config that
//! lives in the config repo (`policies/pipeline.yaml`), with their validation.

pub mod diag;
pub mod duration;
pub mod files;
pub mod notify;
pub mod pipeline;
pub mod policy;
pub mod runtime;
pub mod secret;
pub mod validate;
pub mod verify_job;
pub mod window;

pub use diag::Diagnostic;
pub use duration::HumanDuration;
pub use pipeline::{App, Environment, LoadedPipeline, Pipeline};
pub use runtime::RuntimeConfig;
pub use secret::{Secret, SecretRef};
pub use window::{Freeze, Window};
