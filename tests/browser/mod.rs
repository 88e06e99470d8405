//! A small WebDriver client for the browser tests: Debian's `chromedriver` (package
//! `chromium-driver`) driving headless `chromium`, both installed by `.ci/run`. Everything goes
//! over HTTP on 127.0.0.1 with `reqwest`; every wait is bounded.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The binaries, or why the tests cannot run. Missing binaries skip the tests locally (with
/// the message) and fail them in CI (`CI` set), where `.ci/run` installs both.
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("BATON_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let driver = std::env::var_os("BATON_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    let missing: Vec<String> = [&chromium, &driver]
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some((chromium, driver));
    }
    let message = format!(
        "SKIPPED: {} not found; the status-page browser tests need Debian's `chromium` and \
         `chromium-driver` (`apt-get install chromium chromium-driver`; .ci/run installs them), \
         or BATON_CHROMIUM / BATON_CHROMEDRIVER pointing at the binaries",
        missing.join(" and ")
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("{message}");
    None
}

/// A running chromedriver, killed when dropped.
pub struct Driver {
    child: tokio::process::Child,
    base: String,
    chromium: PathBuf,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start(chromium: PathBuf, driver: PathBuf, port: u16) -> Self {
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromedriver");
        let d = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            chromium,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = d
                .http
                .get(format!("{}/status", d.base))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser whose viewport is `width` × `height` CSS pixels, with
    /// `prefers-color-scheme` set to `scheme` when given.
    pub async fn session(&self, width: u32, height: u32) -> Session {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium.display().to_string(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let answer: Value = self
            .http
            .post(format!("{}/session", self.base))
            .json(&caps)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("chromedriver: new session")
            .json()
            .await
            .unwrap();
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer:#}"))
            .to_string();
        let s = Session {
            base: format!("{}/session/{id}", self.base),
            http: self.http.clone(),
            _profile: profile,
        };
        // The viewport the page sees must be the asked width (headless sizes the window
        // without browser chrome; correct for any difference).
        s.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false } }),
        )
        .await;
        s
    }
}

/// One browser session, closed when [`Session::quit`] is called.
pub struct Session {
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Session {
    /// One WebDriver command; panics with the driver's answer on an error.
    pub async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let resp = req
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}"));
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "chromedriver {method} {path}: {status} {value:#}"
        );
        value["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url })).await;
    }

    /// Run `script` (a function body; `arguments` holds `args`) and return its result.
    pub async fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// Poll `script` until it returns `true`, for at most `timeout`.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exec(script, json!([])).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the whole page (the viewport's width, the document's height).
    pub async fn screenshot(&self) -> Vec<u8> {
        let height = self
            .exec(
                "return Math.ceil(document.documentElement.scrollHeight);",
                json!([]),
            )
            .await
            .as_u64()
            .unwrap_or(1000);
        let width = self
            .exec("return window.innerWidth;", json!([]))
            .await
            .as_u64()
            .unwrap_or(1000);
        let shot = self
            .cmd(
                "POST",
                "/goog/cdp/execute",
                json!({ "cmd": "Page.captureScreenshot", "params": {
                    "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 } } }),
            )
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot is base64")
    }

    /// Press and release one key (WebDriver key codes: Tab is `\u{E004}`).
    pub async fn press(&self, key: &str) {
        self.cmd(
            "POST",
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": [
                { "type": "keyDown", "value": key }, { "type": "keyUp", "value": key } ] }] }),
        )
        .await;
    }

    /// Emulate `prefers-color-scheme: <scheme>`.
    pub async fn color_scheme(&self, scheme: &str) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({ "cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{ "name": "prefers-color-scheme", "value": scheme }] } }),
        )
        .await;
    }

    pub async fn quit(self) {
        let _ = self
            .http
            .delete(&self.base)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
    }
}

/// Where the tests save screenshots: `target/screenshots/` (or under `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
