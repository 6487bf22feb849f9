//! A real `headwater serve` process for tests: started on a free port, stopped (or
//! killed) on demand, its data dir kept so it can be restarted on the same data.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    child: Child,
    pub bootstrap: String,
    pub data_dir: PathBuf,
}

impl ServerProcess {
    /// Starts a server on a free loopback port over `data_dir`.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, "127.0.0.1:0")
    }

    /// Starts a server on `listen` (to restart on the same port).
    pub fn start_on(data_dir: &Path, listen: &str) -> Self {
        Self::spawn(data_dir, &["--listen", listen])
    }

    /// Starts a server with extra `serve` flags (and a free port).
    pub fn start_with_args(data_dir: &Path, args: &[&str]) -> Self {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Self::spawn(data_dir, &all)
    }

    /// Starts a server with a config file (and a free port).
    pub fn start_with_config(data_dir: &Path, config: &Path) -> Self {
        Self::spawn(data_dir, &["--listen", "127.0.0.1:0", "--config", config.to_str().expect("utf-8 path")])
    }

    /// Starts a server with exactly these `serve` flags (plus `--data-dir`).
    pub fn spawn(data_dir: &Path, args: &[&str]) -> Self {
        Self::spawn_with_env(data_dir, args, &[])
    }

    /// [`Self::spawn`] with extra environment variables (credentials for an object store).
    pub fn spawn_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start headwater serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let bootstrap = loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines.next().expect("server exited before listening").expect("stdout");
            if let Some(rest) = line.strip_prefix("headwater listening on ") {
                break rest.split(' ').next().expect("address").to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, bootstrap, data_dir: data_dir.to_path_buf() }
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM and wait for the exit; returns its status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        sigterm(&self.child);
        self.child.wait().expect("wait")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    // SAFETY: kill(2) with a pid we own; no memory is touched.
    let rc = unsafe { libc_kill(child.id() as i32, 15) };
    assert_eq!(rc, 0, "send SIGTERM");
}

/// Runs `python3 <script> <args>` from `core/tests/clients/`, failing the test with its
/// output if it fails.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    let output = Command::new("python3").arg(&path).args(args).output().expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    stdout
}

/// Starts `python3 <script> <args>` from `core/tests/clients/` on its own thread, so the
/// test can act on the brokers meanwhile; join the handle for its output.
pub fn spawn_python(script: &str, args: Vec<String>) -> std::thread::JoinHandle<std::process::Output> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    std::thread::spawn(move || Command::new("python3").arg(&path).args(&args).output().expect("run python3"))
}
