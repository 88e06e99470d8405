//! A real Kubernetes control plane on 127.0.0.1, started from a directory of binaries (the one
//! `scripts/kube-assets` prints), the way controller-runtime's envtest and kwokctl's binary
//! runtime do it: etcd, kube-apiserver (TLS, client certificates, RBAC, service-account keys),
//! kube-controller-manager, kube-scheduler, and kwok faking the kubelets of its Nodes.
//!
//! Not a stand-in: every request goes to the real API server and the real controllers act on
//! it. Tests start one per test binary ([`shared`]) and isolate themselves by namespace;
//! `baton sandbox --kube-assets DIR` starts one for the story. Everything is stopped, and its
//! files removed, when the [`ControlPlane`] is dropped — or when the process that started it
//! exits, however it exits (each binary runs under a small `sh` guard that kills it when its
//! stdin, a pipe from this process, closes).
//!
//! Rollouts can fail for real: pods whose image matches a marker given to
//! [`ControlPlane::mark_broken`] never become Ready (so the Deployment controller reports
//! `ProgressDeadlineExceeded`), and Job pods with such an image — or with the environment
//! variable `SIM_JOB_FAIL=true`, as on the stand-in — fail with exit code 1.
#![forbid(unsafe_code)]

mod certs;
mod kwok;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

/// The binaries a directory of assets must hold.
pub const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// Why the control plane did not start, or a request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The assets directory lacks a binary or kwok's stage files.
    #[error(
        "{dir}: no {what} (build the assets with scripts/kube-assets, which prints the directory)"
    )]
    Assets { dir: PathBuf, what: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A component did not come up in time; the end of its log says why.
    #[error("{component} did not become ready within {secs} s; the end of its log:\n{log}")]
    NotReady {
        component: &'static str,
        secs: u64,
        log: String,
    },
    /// A component exited while starting.
    #[error("{component} exited while starting; the end of its log:\n{log}")]
    Exited {
        component: &'static str,
        log: String,
    },
    #[error("certificate generation: {0}")]
    Certs(String),
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Runs `"$@"` in the background and waits for it, so the guard exits when the binary does
/// (and [`Proc::exited`] sees a crash at once); a reader of the guard's stdin (fd 3: background
/// lists get /dev/null as stdin) kills the binary when that pipe closes. SIGKILL: the data is
/// thrown away anyway, and a graceful API server waits for an etcd that is already gone.
const GUARD: &str = r#"exec 3<&0
"$@" 3<&- </dev/null &
c=$!
{ read _ <&3; kill -9 $c 2>/dev/null; } &
wait $c"#;

/// Removes the control plane's directory once this process is gone and every guard listed in
/// `$1/pids` has exited (bounded: 60 s), for control planes never dropped (a test binary's
/// shared one lives in a static).
const JANITOR: &str = r#"exec 3<&0
{ read _ <&3
  n=0
  while [ $n -lt 600 ]; do
    alive=0
    for p in $(cat "$1/pids" 2>/dev/null); do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1; n=$((n+1))
  done
  rm -rf "$1"; } </dev/null >/dev/null 2>&1 &"#;

/// One started binary, run under the `sh` guard.
struct Proc {
    name: &'static str,
    child: Child,
    /// Closing it (drop) tells the guard to stop the binary.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Proc {
    /// Start `bin args…` with its output in `log`. The guard runs the binary in the background
    /// and kills it as soon as its own stdin reaches EOF: when [`Proc::stop`] drops the pipe, or
    /// when this process dies and the kernel closes it.
    fn spawn(name: &'static str, bin: &Path, args: &[String], log: PathBuf) -> Result<Self, Error> {
        let out = std::fs::File::create(&log).map_err(io(format!("{}", log.display())))?;
        let err = out.try_clone().map_err(io("log file"))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(GUARD)
            .arg("guard")
            .arg(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        let stdin = child.stdin.take();
        Ok(Self {
            name,
            child,
            stdin,
            log,
        })
    }

    /// Tell the guard to stop the binary (closing its stdin), without waiting.
    fn close(&mut self) {
        drop(self.stdin.take());
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    fn stop(&mut self) {
        self.close();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port on 127.0.0.1")
}

/// Options for [`ControlPlane::start_with`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Fake Nodes kwok keeps Ready.
    pub nodes: usize,
    /// Pods each Node takes.
    pub pods_per_node: u32,
    /// How long each component may take to become ready.
    pub ready_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 1,
            pods_per_node: 2000,
            ready_timeout: Duration::from_secs(120),
        }
    }
}

/// A running control plane. Dropping it stops every component and removes its files.
pub struct ControlPlane {
    assets: PathBuf,
    dir: tempfile::TempDir,
    procs: Mutex<Vec<Proc>>,
    server: String,
    ca_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
    kwok_args: Vec<String>,
    broken: Mutex<BTreeSet<String>>,
    version: String,
    started_in: Duration,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("server", &self.server)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Start one from `assets` with default options.
    pub async fn start(assets: &Path) -> Result<Self, Error> {
        Self::start_with(assets, Options::default()).await
    }

    /// Start one from `assets`: every component on its own free ports, waiting for each to be
    /// ready, then a Node kwok keeps Ready and the `default` ServiceAccount the controller-manager
    /// creates (pods are refused before it exists).
    pub async fn start_with(assets: &Path, options: Options) -> Result<Self, Error> {
        let started = Instant::now();
        install_crypto_provider();
        for bin in BINARIES {
            if !assets.join(bin).is_file() {
                return Err(Error::Assets {
                    dir: assets.to_path_buf(),
                    what: bin.to_string(),
                });
            }
        }
        kwok::check_stages(assets)?;
        let dir = tempfile::Builder::new()
            .prefix("baton-controlplane-")
            .tempdir()
            .map_err(io("a temporary directory"))?;
        let d = dir.path().to_path_buf();
        spawn_janitor(&d)?;
        let certs = certs::Certs::generate().map_err(|e| Error::Certs(e.to_string()))?;
        let write = |name: &str, text: &str| -> Result<String, Error> {
            let p = d.join(name);
            std::fs::write(&p, text).map_err(io(format!("{}", p.display())))?;
            Ok(p.display().to_string())
        };
        let ca_file = write("ca.crt", &certs.ca_pem)?;
        let server_crt = write("apiserver.crt", &certs.server_cert_pem)?;
        let server_key = write("apiserver.key", &certs.server_key_pem)?;
        let sa_key = write("sa.key", &certs.sa_key_pem)?;
        let sa_pub = write("sa.pub", &certs.sa_pub_pem)?;

        let etcd_port = free_port();
        let peer_port = free_port();
        let api_port = free_port();
        let server = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = kubeconfig_text(
            &server,
            &certs.ca_pem,
            &Credential::Certificate {
                cert_pem: &certs.admin_cert_pem,
                key_pem: &certs.admin_key_pem,
            },
        );
        let admin_kubeconfig = write("admin.kubeconfig", &kubeconfig)?;
        // Every request, with who made it, in the API server's own audit log: tests count the
        // writes of one identity from it.
        let audit_policy = write(
            "audit-policy.yaml",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
        )?;

        let mut cp = Self {
            assets: assets.to_path_buf(),
            procs: Mutex::new(Vec::new()),
            server: server.clone(),
            ca_pem: certs.ca_pem.clone(),
            admin_cert_pem: certs.admin_cert_pem.clone(),
            admin_key_pem: certs.admin_key_pem.clone(),
            kwok_args: Vec::new(),
            broken: Mutex::new(BTreeSet::new()),
            version: String::new(),
            started_in: Duration::ZERO,
            dir,
        };
        let s = |v: &str| v.to_string();

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        cp.spawn(
            "etcd",
            vec![
                s("--name=default"),
                format!("--data-dir={}", d.join("etcd").display()),
                s("--unsafe-no-fsync"),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                s("--log-level=warn"),
            ],
        )?;
        cp.wait_http("etcd", &format!("{etcd_url}/health"), options.ready_timeout)
            .await?;

        cp.spawn(
            "kube-apiserver",
            vec![
                format!("--etcd-servers={etcd_url}"),
                s("--bind-address=127.0.0.1"),
                format!("--secure-port={api_port}"),
                format!("--tls-cert-file={server_crt}"),
                format!("--tls-private-key-file={server_key}"),
                format!("--client-ca-file={ca_file}"),
                format!("--cert-dir={}", d.join("apiserver-certs").display()),
                s("--service-account-issuer=https://kubernetes.default.svc.cluster.local"),
                format!("--service-account-key-file={sa_pub}"),
                format!("--service-account-signing-key-file={sa_key}"),
                s("--service-cluster-ip-range=10.0.0.0/24"),
                s("--authorization-mode=RBAC"),
                s("--allow-privileged=true"),
                s("--endpoint-reconciler-type=none"),
                s("--profiling=false"),
                format!("--audit-policy-file={audit_policy}"),
                format!("--audit-log-path={}", d.join("audit.log").display()),
                s("--audit-log-mode=blocking"),
                s("--audit-log-maxsize=0"),
            ],
        )?;
        let client = cp.wait_apiserver(options.ready_timeout).await?;
        cp.version = client.apiserver_version().await?.git_version;

        let sched_config = write(
            "scheduler.yaml",
            &format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n\
                 clientConnection:\n  kubeconfig: {admin_kubeconfig}\nleaderElection:\n  leaderElect: false\n"
            ),
        )?;
        cp.spawn(
            "kube-controller-manager",
            vec![
                format!("--kubeconfig={admin_kubeconfig}"),
                s("--leader-elect=false"),
                s("--controllers=*"),
                format!("--service-account-private-key-file={sa_key}"),
                format!("--root-ca-file={ca_file}"),
                s("--bind-address=127.0.0.1"),
                format!("--secure-port={}", free_port()),
                s("--profiling=false"),
                // kwok renews the fake Node's lease through the same rate-limited client that
                // patches pod status: with hundreds of pods starting on a busy machine, renewals
                // came more than the default 50 s late, the Node went NotReady and every pod on
                // it unready (seen in the 600-Deployment bench). Fake nodes do not fail.
                s("--node-monitor-grace-period=10m"),
            ],
        )?;
        cp.spawn(
            "kube-scheduler",
            vec![
                format!("--config={sched_config}"),
                s("--bind-address=127.0.0.1"),
                format!("--secure-port={}", free_port()),
                s("--profiling=false"),
            ],
        )?;

        for i in 0..options.nodes.max(1) {
            create_node(&client, &format!("kwok-node-{i}"), options.pods_per_node).await?;
        }
        cp.kwok_args = vec![
            format!("--kubeconfig={admin_kubeconfig}"),
            format!("--config={}", d.join("kwok.yaml").display()),
            s("--manage-all-nodes=true"),
            format!("--server-address=127.0.0.1:{}", free_port()),
            s("--node-ip=127.0.0.1"),
        ];
        cp.restart_kwok()?;
        cp.wait_until("kube-controller-manager", options.ready_timeout, || {
            let client = client.clone();
            async move {
                let sa: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
                    kube::Api::namespaced(client, "default");
                matches!(sa.get_opt("default").await, Ok(Some(_)))
            }
        })
        .await?;
        cp.wait_until("kwok", options.ready_timeout, || {
            let client = client.clone();
            async move {
                let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
                nodes.list(&Default::default()).await.is_ok_and(|l| {
                    !l.items.is_empty()
                        && l.items.iter().all(|n| {
                            n.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                        })
                })
            }
        })
        .await?;
        cp.started_in = started.elapsed();
        Ok(cp)
    }

    fn spawn(&self, name: &'static str, args: Vec<String>) -> Result<(), Error> {
        let log = self.dir.path().join(format!("{name}.log"));
        let proc = Proc::spawn(name, &self.assets.join(name), &args, log)?;
        let pids = self.dir.path().join("pids");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&pids)
            .map_err(io(format!("{}", pids.display())))?;
        std::io::Write::write_all(&mut file, format!("{}\n", proc.child.id()).as_bytes())
            .map_err(io(format!("{}", pids.display())))?;
        self.procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(proc);
        Ok(())
    }

    /// Start kwok, or restart it with the current broken markers.
    fn restart_kwok(&self) -> Result<(), Error> {
        let config = kwok::config(
            &self.assets,
            &self.broken.lock().unwrap_or_else(|p| p.into_inner()),
        )?;
        let path = self.dir.path().join("kwok.yaml");
        std::fs::write(&path, config).map_err(io(format!("{}", path.display())))?;
        {
            let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = procs.iter().position(|p| p.name == "kwok") {
                let mut old = procs.remove(i);
                old.stop();
            }
        }
        self.spawn("kwok", self.kwok_args.clone())
    }

    fn exited(&self, name: &str) -> Option<String> {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        procs
            .iter_mut()
            .find(|p| p.name == name)
            .and_then(|p| p.exited().then(|| p.log_tail()))
    }

    fn log_of(&self, name: &str) -> String {
        log_tail(&self.dir.path().join(format!("{name}.log")))
    }

    /// Poll `ready` every 100 ms until it holds, `component` exits, or `timeout` passes.
    async fn wait_until<F, Fut>(
        &self,
        component: &'static str,
        timeout: Duration,
        mut ready: F,
    ) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if ready().await {
                return Ok(());
            }
            if let Some(log) = self.exited(component) {
                return Err(Error::Exited { component, log });
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    component,
                    secs: timeout.as_secs(),
                    log: self.log_of(component),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_http(
        &self,
        component: &'static str,
        url: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let url = url.to_string();
        self.wait_until(component, timeout, || {
            let url = url.clone();
            async move { http_ok(&url).await }
        })
        .await
    }

    async fn wait_apiserver(&self, timeout: Duration) -> Result<kube::Client, Error> {
        let client = self.client().await?;
        self.wait_until("kube-apiserver", timeout, || {
            let client = client.clone();
            async move {
                let req = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("a request");
                client
                    .request_text(req)
                    .await
                    .is_ok_and(|t| t.trim() == "ok")
            }
        })
        .await?;
        Ok(client)
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The API server's `gitVersion` (`v1.36.3`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How long [`ControlPlane::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The PEM of the CA that signed the API server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig of the cluster administrator (`system:masters`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig_text(
            &self.server,
            &self.ca_pem,
            &Credential::Certificate {
                cert_pem: &self.admin_cert_pem,
                key_pem: &self.admin_key_pem,
            },
        )
    }

    /// A kubeconfig that authenticates with a bearer token.
    pub fn kubeconfig_for_token(&self, token: &str) -> String {
        kubeconfig_text(&self.server, &self.ca_pem, &Credential::Token(token))
    }

    /// An administrator's client, bound to the calling tokio runtime.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        client_from_kubeconfig(&self.kubeconfig()).await
    }

    /// Mint a restricted identity: the ServiceAccount `namespace/name` (created when missing)
    /// and a token for it from the TokenRequest API, valid for an hour. Grant it what it may do
    /// with Roles and bindings; returns a kubeconfig that authenticates as it.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, Error> {
        let token = self.service_account_token(namespace, name).await?;
        Ok(self.kubeconfig_for_token(&token))
    }

    /// A token of the ServiceAccount `namespace/name` (created, with its namespace, when missing).
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, Error> {
        use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
        use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
        let client = self.client().await?;
        let pp = kube::api::PatchParams::apply("baton-controlplane");
        let ns: kube::Api<Namespace> = kube::Api::all(client.clone());
        ns.patch(
            namespace,
            &pp,
            &kube::api::Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            ),
        )
        .await?;
        let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client, namespace);
        sas.patch(
            name,
            &pp,
            &kube::api::Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})),
        )
        .await?;
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = sas
            .create_token_request(name, &Default::default(), &request)
            .await?;
        Ok(answer.status.map(|s| s.token).unwrap_or_default())
    }

    /// From now on, pods whose image matches `marker` (the whole reference, or its tag or digest)
    /// never become Ready, and Job pods with it fail. Restarts kwok with the new rule.
    /// Marking a marker twice does not restart kwok again (tests of one binary share it).
    pub fn mark_broken(&self, marker: &str) -> Result<(), Error> {
        let added = self
            .broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(marker.to_string());
        if added { self.restart_kwok() } else { Ok(()) }
    }

    /// Undo [`ControlPlane::mark_broken`].
    pub fn unmark_broken(&self, marker: &str) -> Result<(), Error> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(marker);
        self.restart_kwok()
    }

    /// The API server's metrics (Prometheus text), read as the administrator.
    pub async fn metrics(&self) -> Result<String, Error> {
        let client = self.client().await?;
        let req = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("a request");
        Ok(client.request_text(req).await?)
    }

    /// The API server's audit events (one JSON object a request, `Metadata` level, written
    /// before the response is sent) whose user is `username`.
    pub fn audit_events(&self, username: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e.pointer("/user/username").and_then(|u| u.as_str()) == Some(username))
            .collect()
    }

    /// The mutating requests (`create`, `update`, `patch`, `delete`, `deletecollection`) of
    /// `username`, as `verb resource[/subresource] namespace/name`, in order. Dry runs count
    /// too: they are requests, even though they change nothing.
    pub fn writes_by(&self, username: &str) -> Vec<String> {
        self.audit_events(username)
            .iter()
            .filter(|e| {
                matches!(
                    e["verb"].as_str(),
                    Some("create" | "update" | "patch" | "delete" | "deletecollection")
                )
            })
            .map(|e| {
                let r = &e["objectRef"];
                let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                let sub = s("subresource");
                format!(
                    "{} {}{} {}/{}",
                    e["verb"].as_str().unwrap_or(""),
                    s("resource"),
                    if sub.is_empty() {
                        String::new()
                    } else {
                        format!("/{sub}")
                    },
                    s("namespace"),
                    s("name")
                )
            })
            .collect()
    }

    /// The end of one component's log (`etcd`, `kube-apiserver`, …), for failure messages.
    pub fn log(&self, component: &str) -> String {
        self.log_of(component)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        // Every component shuts down at once (the API server's graceful stop takes seconds).
        for p in procs.iter_mut() {
            p.close();
        }
        while let Some(mut p) = procs.pop() {
            p.stop();
        }
    }
}

/// Start the [`JANITOR`] for `dir`. Its stdin pipe is leaked on purpose: it closes only when
/// this process exits.
fn spawn_janitor(dir: &Path) -> Result<(), Error> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(JANITOR)
        .arg("janitor")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("start the janitor"))?;
    std::mem::forget(child.stdin.take());
    // The janitor's shell exits at once, leaving its background reader; reap it.
    let _ = child.wait();
    Ok(())
}

enum Credential<'a> {
    Certificate { cert_pem: &'a str, key_pem: &'a str },
    Token(&'a str),
}

fn kubeconfig_text(server: &str, ca_pem: &str, credential: &Credential<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match credential {
        Credential::Certificate { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(cert_pem),
            b64(key_pem)
        ),
        Credential::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kwok\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: user\n  user:\n{user}\
         contexts:\n- name: kwok\n  context:\n    cluster: kwok\n    user: user\ncurrent-context: kwok\n",
        ca = b64(ca_pem),
    )
}

/// A client from a kubeconfig's text, bound to the calling tokio runtime.
pub async fn client_from_kubeconfig(text: &str) -> Result<kube::Client, Error> {
    install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text)
        .map_err(|e| Error::Kube(kube::Error::InferKubeconfig(e)))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| Error::Kube(kube::Error::InferKubeconfig(e)))?;
    Ok(kube::Client::try_from(config)?)
}

/// Both of rustls' providers are compiled into the workspace: pick ring, as baton does.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn http_ok(url: &str) -> bool {
    // etcd's /health over plain HTTP on loopback: a minimal client is enough.
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else {
        return false;
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut buf)).await;
    let head = String::from_utf8_lossy(&buf);
    read.is_ok() && (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"))
}

async fn create_node(client: &kube::Client, name: &str, pods: u32) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let resources = json!({"cpu": "1000", "memory": "4Ti", "pods": pods.to_string()});
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}
        },
        "status": {"allocatable": resources, "capacity": resources}
    }))
    .expect("a Node");
    match nodes.create(&Default::default(), &node).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The control plane shared by every test of one test binary, started on first use from the
/// assets `scripts/kube-assets` built (`BATON_KUBE_ASSETS`, else found with
/// `scripts/kube-assets --check` from `project_root`). `None` when no assets are built; tests
/// then fail with [`assets_missing`]'s message unless the caller allows skipping.
///
/// It runs on a thread of its own, so tests on any tokio runtime can use it; each test makes
/// its own clients ([`ControlPlane::client`]) on its runtime. It is stopped when the test
/// binary exits (the guards see their stdin close).
pub fn shared(project_root: &Path) -> Result<&'static ControlPlane, String> {
    static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
    let root = project_root.to_path_buf();
    SHARED
        .get_or_init(move || {
            let assets = assets_dir(&root)?;
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(ControlPlane::start(&assets)).map_err(|e| {
                    format!("starting the control plane from {}: {e}", assets.display())
                })
            })
            .join()
            .map_err(|_| "the control plane's start-up thread panicked".to_string())?
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The assets directory: `BATON_KUBE_ASSETS`, else what `scripts/kube-assets --check` prints.
pub fn assets_dir(project_root: &Path) -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("BATON_KUBE_ASSETS") {
        return Ok(PathBuf::from(dir));
    }
    let out = Command::new(project_root.join("scripts/kube-assets"))
        .arg("--check")
        .output()
        .map_err(|e| format!("scripts/kube-assets --check: {e}"))?;
    if !out.status.success() {
        return Err(assets_missing());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// What to do when the real control plane's binaries are not built.
pub fn assets_missing() -> String {
    "the real Kubernetes test assets are not built: run scripts/kube-assets (or set \
     BATON_KUBE_ASSETS to a directory holding etcd, kube-apiserver, kube-controller-manager, \
     kube-scheduler and kwok); .ci/run does this"
        .to_string()
}
