//! A zombi broker for the load tools: the binary cargo built (or `ZOMBI_BIN`) on a fresh data dir
//! and ephemeral ports, or an address given with `--bootstrap`.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

pub struct Broker {
    child: Option<Child>,
    pub bootstrap: String,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts zombi with `extra` flags, or uses the broker at `bootstrap`.
    pub fn start(bootstrap: Option<&str>, extra: &[&str]) -> Broker {
        Broker::start_with_env(bootstrap, extra, &[])
    }

    /// The same, with environment variables for the broker.
    pub fn start_with_env(bootstrap: Option<&str>, extra: &[&str], env: &[(String, String)]) -> Broker {
        if let Some(bootstrap) = bootstrap {
            return Broker { child: None, bootstrap: bootstrap.to_string(), _dir: None };
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // ZOMBI_BIN runs another build of the broker (a before/after comparison) under the same tool.
        let binary = std::env::var_os("ZOMBI_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_zombi").into());
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(["--group-initial-rebalance-delay-ms", "0"])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start zombi");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("listening line");
        // `kafka=ADDR` (one listener) or `listeners=NAME://ADDR,…` (the first is used).
        let bootstrap = line
            .split_whitespace()
            .find_map(|p| {
                p.strip_prefix("kafka=").map(str::to_string).or_else(|| {
                    let first = p.strip_prefix("listeners=")?.split(',').next()?;
                    first.split_once("://").map(|(_, address)| address.to_string())
                })
            })
            .expect("kafka address");
        Broker { child: Some(child), bootstrap, _dir: Some(dir) }
    }

    /// The broker's resident and peak resident memory, KiB (Linux).
    pub fn rss_kib(&self) -> Option<(u64, u64)> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field =
            |name: &str| status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok();
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
