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

/// The example, with staging's smoke test made to fail and `onFailure: rollback` in staging.
pub async fn failing_smoke_sandbox() -> baton::sandbox::Sandbox {
    baton::sandbox::Sandbox::start_with(&Default::default(), |registry, seed| {
        let initial = baton::sandbox::push_initial_images(registry);
        baton::sandbox::seed_files(seed, &registry.host(), std::time::Duration::from_secs(2), &initial)?;
        let edit = |file: &str, from: &str, to: &str| -> Result<(), baton::sandbox::SandboxError> {
            let p = seed.join(file);
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains(from), "{file} lacks {from:?}");
            std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
            Ok(())
        };
        edit(
            "environments/staging/verify/smoke.yaml",
            "          command: [\"sh\", \"-c\"]\n",
            "          command: [\"sh\", \"-c\"]\n          env:\n            - { name: SIM_JOB_FAIL, value: \"true\" }\n            - { name: SIM_JOB_LOG, value: \"GET /healthz: 503 Service Unavailable\" }\n",
        )?;
        edit(
            "policies/pipeline.yaml",
            "    mergeMethod: squash\n",
            "    mergeMethod: squash\n    onFailure: rollback\n",
        )?;
        Ok(initial)
    })
    .await
    .unwrap()
}
