//! The Debian package: built by cargo-deb from this tree, installed with `dpkg -i` on this
//! machine, its unit checked by `systemd-analyze verify`, and its installed binary serving a
//! temporary data directory to a healthy `/readyz`. Removed and purged at the end.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const UNIT_PATHS: &[&str] =
    &["/lib/systemd/system/latchkey.service", "/usr/lib/systemd/system/latchkey.service"];

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} could not run: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, dpkg and cargo-deb (cargo install cargo-deb): builds and installs the Debian package"]
async fn the_debian_package_installs_a_hardened_service_whose_binary_serves() {
    let uid = ok("id", &["-u"]);
    assert_eq!(uid.trim(), "0", "installing a package needs root");
    // The release build takes the machine's cores: no other server of the suite runs meanwhile.
    let _alone = crate::helpers::ALONE.write().await;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace();
    let built = Command::new(&cargo)
        .args(["deb", "-p", "latchkey", "--locked", "--output"])
        .arg(root.join("target/debian"))
        .current_dir(&root)
        .output()
        .expect("cargo runs");
    assert!(
        built.status.success(),
        "cargo deb failed (is cargo-deb installed? `cargo install cargo-deb --locked`):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8_lossy(&built.stdout).lines().last().unwrap_or_default().trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "no package in {deb:?}");

    let _ = run("dpkg", &["--purge", "latchkey"]);
    ok("dpkg", &["-i", &deb]);
    let installed = Installed;

    let version = ok("/usr/bin/latchkey", &["--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    assert_eq!(ok("sh", &["-c", "command -v latchkey"]).trim(), "/usr/bin/latchkey", "on the PATH");
    let unit = UNIT_PATHS.iter().find(|p| Path::new(p).exists()).expect("the systemd unit is installed");
    let unit_text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "User=latchkey",
        "StateDirectory=latchkey",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecStart=/usr/bin/latchkey --config /etc/latchkey/latchkey.toml serve",
    ] {
        assert!(unit_text.lines().any(|l| l == line), "{unit} lacks {line}");
    }
    assert!(ok("getent", &["passwd", "latchkey"]).contains("/var/lib/latchkey"), "the service's own user");
    assert_eq!(ok("stat", &["-c", "%U %a", "/var/lib/latchkey"]).trim(), "latchkey 700");
    assert_eq!(ok("stat", &["-c", "%G %a", "/etc/latchkey/latchkey.toml"]).trim(), "latchkey 640");
    let conffiles = ok("dpkg-query", &["--showformat=${Conffiles}", "--show", "latchkey"]);
    assert!(
        conffiles.contains("/etc/latchkey/latchkey.toml"),
        "the configuration survives upgrades: {conffiles}"
    );
    if Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let verified = run("systemd-analyze", &["verify", unit]);
        let said = String::from_utf8_lossy(&verified.stderr).into_owned();
        assert!(verified.status.success(), "systemd-analyze verify {unit}:\n{said}");
        let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("latchkey")).collect();
        assert!(about_ours.is_empty(), "systemd-analyze has remarks on the unit: {about_ours:?}");
    }

    // The installed binary, with the installed configuration, on a data directory of its own.
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", data.path().join("latchkey.db").display());
    let mut server = Command::new("/usr/bin/latchkey")
        .args(["--config", "/etc/latchkey/latchkey.toml", "serve", "--listen", "127.0.0.1:0"])
        .args(["--database-url", &database])
        .current_dir(data.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the installed binary starts");
    let stdout = server.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Latchkey is listening on ") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the installed server listens");
    let ready = crate::helpers::eventually(
        Duration::from_secs(10),
        || async {
            reqwest::get(format!("http://{addr}/readyz")).await.map(|r| r.status().as_u16()).unwrap_or(0)
        },
        |status| *status == 200,
    )
    .await;
    assert_eq!(ready, 200, "the installed server is ready");
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let exited = server.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    assert!(data.path().join("latchkey.secret").exists(), "its state is in the data directory it was given");

    drop(installed);
    assert!(!Path::new("/usr/bin/latchkey").exists(), "purged");
}

/// Purges the package when the test ends, passed or not.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "latchkey"]);
    }
}
