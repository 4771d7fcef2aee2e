//! The load tool over a secured listener (`--security ssl|sasl_ssl`): a CA and a server
//! certificate for 127.0.0.1 made with openssl, the broker's flags for that listener, and the
//! client settings every librdkafka client of the run then takes (`super::client`).
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// The bootstrap admin the SASL_SSL run authenticates as (SCRAM-SHA-512).
pub const USER: &str = "load";
pub const PASSWORD: &str = "load-secret";

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// `ca.crt`, and `server.crt`/`server.key` for 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) {
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt"];
    openssl(dir, &[&ca[..], &["-days", "2", "-subj", "/CN=zombi-load-ca"]].concat());
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    let sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"];
    openssl(dir, &[&sign[..], &["-out", "server.crt", "-days", "2", "-extfile", "server.ext"]].concat());
}

/// The broker flags and environment, and the client settings, of one security mode.
pub struct Mode {
    pub flags: Vec<String>,
    pub env: Vec<(String, String)>,
    pub client: Vec<(String, String)>,
}

/// `plaintext` (the default listener), `ssl`, or `sasl_ssl` (SCRAM-SHA-512 with
/// `--authorizer standard`; the user is the bootstrap admin, a super user).
pub fn mode(name: &str, dir: &Path) -> Mode {
    let pairs = |items: &[(&str, &str)]| items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if name == "plaintext" {
        return Mode { flags: Vec::new(), env: Vec::new(), client: Vec::new() };
    }
    certificates(dir);
    let file = |name: &str| dir.join(name).display().to_string();
    let mut flags =
        vec!["--ssl-cert-file".to_string(), file("server.crt"), "--ssl-key-file".to_string(), file("server.key")];
    let mut client = vec![("ssl.ca.location".to_string(), file("ca.crt"))];
    match name {
        "ssl" => {
            flags.extend(["--listeners".to_string(), "SSL://127.0.0.1:0".to_string()]);
            client.push(("security.protocol".to_string(), "SSL".to_string()));
            Mode { flags, env: Vec::new(), client }
        }
        "sasl_ssl" => {
            flags.extend(
                ["--listeners", "SASL_SSL://127.0.0.1:0", "--bootstrap-admin", USER, "--authorizer", "standard"]
                    .map(str::to_string),
            );
            client.extend(pairs(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", USER),
                ("sasl.password", PASSWORD),
            ]));
            Mode { flags, env: pairs(&[("ZOMBI_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD)]), client }
        }
        other => panic!("--security {other}: one of plaintext, ssl, sasl_ssl"),
    }
}
