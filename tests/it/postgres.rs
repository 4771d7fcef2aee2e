//! A private PostgreSQL cluster per test: `initdb` in a temporary directory, the server on a free
//! loopback port (no other address, its socket in that directory), a password-protected role,
//! stopped (`pg_ctl stop -m immediate`) and deleted when the test ends, panics included.
//!
//! Binaries: `ZOMBI_PG_BIN` or the newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql`
//! package; scripts/test.sh installs it). Missing binaries fail the test with that message.
//! `initdb` and `postgres` refuse to run as root: as root, the cluster is made and run by the
//! `postgres` user the Debian package creates (else `nobody`) through `runuser`, and its directory
//! is handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    run_as: Option<String>,
    pub port: u16,
    _dir: tempfile::TempDir,
}

pub const USER: &str = "zombi";
pub const PASSWORD: &str = "s3cr3t-pg";
pub const DATABASE: &str = "zombi";

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZOMBI_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin: install Debian's `postgresql` \
             package (scripts/test.sh does) or set ZOMBI_PG_BIN"
        ),
    }
}

/// Who runs the cluster: ourselves, unless we are root.
fn cluster_user() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let exists = |user: &str| Command::new("id").arg("-u").arg(user).output().is_ok_and(|o| o.status.success());
    Some(if exists("postgres") { "postgres" } else { "nobody" }.to_string())
}

impl Postgres {
    pub fn start() -> Postgres {
        Self::start_with(false)
    }

    /// With `tls`, the server has a self-signed certificate (openssl) and `pg_hba.conf` admits
    /// TCP clients only over TLS (`hostssl`), so a client that connects at all used TLS.
    pub fn start_with(tls: bool) -> Postgres {
        let bin = bin_dir();
        let run_as = cluster_user();
        let dir = tempfile::Builder::new().prefix("zombi-pg").tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, PASSWORD).expect("password file");
        if let Some(user) = &run_as {
            let owned = Command::new("chown").args(["-R", user]).arg(dir.path()).status().expect("chown");
            assert!(owned.success(), "cannot hand {} to {user}", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let postgres = Postgres { bin, data, run_as, port, _dir: dir };
        postgres.run(
            "initdb",
            &[
                "-D".as_ref(),
                postgres.data.as_os_str(),
                "-U".as_ref(),
                USER.as_ref(),
                "--auth=scram-sha-256".as_ref(),
                format!("--pwfile={}", password_file.display()).as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
            ],
        );
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=100",
            postgres._dir.path().display()
        );
        if tls {
            postgres.require_tls();
            options.push_str(" -c ssl=on");
        }
        let log = postgres._dir.path().join("server.log");
        postgres.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                postgres.data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        let created = Command::new(postgres.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER, DATABASE])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("createdb");
        assert!(created.status.success(), "createdb: {}", String::from_utf8_lossy(&created.stderr));
        postgres
    }

    /// A self-signed certificate in the data directory (postgres reads `server.crt` and
    /// `server.key` there by default) and TLS-only TCP access.
    fn require_tls(&self) {
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
            .arg("-keyout")
            .arg(self.data.join("server.key"))
            .arg("-out")
            .arg(self.data.join("server.crt"))
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
        let hba = "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
        std::fs::write(self.data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        if let Some(user) = &self.run_as {
            let owned = Command::new("chown").args(["-R", user]).arg(&self.data).status().expect("chown");
            assert!(owned.success(), "cannot hand {} to {user}", self.data.display());
        }
        let private = Command::new("chmod").arg("600").arg(self.data.join("server.key")).status().expect("chmod");
        assert!(private.success());
    }

    /// Runs one of the cluster's programs (as the cluster's user) and insists on success.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Output {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        // A directory the cluster's user may enter (runuser keeps ours).
        command.args(args).current_dir(Path::new("/"));
        let output = command.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// What the broker is given: `postgres://zombi:PASSWORD@127.0.0.1:PORT/zombi`.
    pub fn url(&self) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The same database for pyiceberg's SqlCatalog (SQLAlchemy with psycopg2).
    pub fn sqlalchemy_url(&self) -> String {
        format!("postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Runs SQL with psql and returns its unaligned output.
    pub fn query(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER, "-d", DATABASE])
            .args(["-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .expect("psql");
        assert!(output.status.success(), "psql: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let path = self.bin.join("pg_ctl");
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&path);
                command
            }
            None => Command::new(&path),
        };
        let _ = command.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]).current_dir("/").output();
    }
}
