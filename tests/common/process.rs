//! `nexus-auth` processes for tests: `serve` on a free loopback port, and
//! the `signals` and `keys` commands.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::nexus_auth;

/// Maximum wait for `serve` to log its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `nexus-auth serve`, killed when dropped.
pub struct ServeProcess {
    pub address: SocketAddr,
    child: Child,
    stderr: mpsc::Receiver<String>,
}

/// Spawns `serve --bind 127.0.0.1:0 --workers 1` with `args`, without
/// waiting for it to listen.
pub fn spawn_serve(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = nexus_auth()
        .args(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nexus-auth serve");
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    // Reads continuously, so that the process never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, receiver)
}

impl ServeProcess {
    /// Starts `serve` with `args` and waits until it logs its address.
    pub fn start(args: &[&str]) -> ServeProcess {
        let (child, stderr) = spawn_serve(args);
        Self::wait_listening(child, stderr)
    }

    /// Waits until the `serve` process `child` logs its address, and
    /// panics with its output if it exits or takes over `START_TIMEOUT`.
    pub fn wait_listening(mut child: Child, stderr: mpsc::Receiver<String>) -> ServeProcess {
        let prefix = "listening on http://";
        let mut output = Vec::new();
        loop {
            let line = match stderr.recv_timeout(START_TIMEOUT) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    panic!(
                        "serve did not log {prefix:?} within {START_TIMEOUT:?} \
                         (exit status {status:?}); its output:\n{}",
                        output.join("\n")
                    );
                }
            };
            if let Some(rest) = line.split(prefix).nth(1) {
                let address = rest.split(';').next().unwrap().parse().unwrap();
                return ServeProcess {
                    address,
                    child,
                    stderr,
                };
            }
            output.push(line);
        }
    }

    /// Returns whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Returns the log lines written since the last call.
    pub fn log_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a `signals` or `keys` command with `args` and returns its standard
/// output, panicking with its standard error when it fails.
pub fn run_command(args: &[&str]) -> String {
    let output = nexus_auth().args(args).output().expect("run nexus-auth");
    assert!(
        output.status.success(),
        "nexus-auth {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
