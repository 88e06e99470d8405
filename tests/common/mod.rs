//! Helpers shared by the integration tests: what the benches need too lives in the
//! `baton-test-support` crate (re-exported here); running the `baton` binary stays here, since
//! only this package's tests know where Cargo built it.
#![allow(dead_code, unused_imports)]

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use baton_test_support::example::{
    EXAMPLE_DIRS, copy_dir, edit, example_files, example_repo, git, project_root, seed_repo,
};
pub use baton_test_support::net::{free_port, http_get};

/// How long one `baton` command of a test may run before the test fails.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// Run the real `baton` binary (for at most [`COMMAND_LIMIT`]).
pub fn baton(args: &[&str]) -> Output {
    output_within(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(args)
            .env_remove("BATON_REPO"),
        COMMAND_LIMIT,
    )
}

/// `cmd.output()`, bounded: a command still running after `limit` is killed and the test
/// fails with what it printed so far (a hung child never hangs the suite).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(status) => Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{cmd:?} still ran after {limit:?}; killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
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
