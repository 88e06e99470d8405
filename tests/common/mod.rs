//! Helpers shared by the integration tests: what the benches need too lives in the
//! `baton-test-support` crate (re-exported here); running the `baton` binary stays here, since
//! only this package's tests know where Cargo built it.
#![allow(dead_code, unused_imports)]

use std::process::{Command, Output};

pub use baton_test_support::example::{
    EXAMPLE_DIRS, copy_dir, edit, example_files, example_repo, git, project_root, seed_repo,
};
pub use baton_test_support::net::{free_port, http_get};

/// Run the real `baton` binary.
pub fn baton(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env_remove("BATON_REPO")
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
