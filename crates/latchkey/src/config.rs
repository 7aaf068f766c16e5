//! Settings: defaults, then a TOML file (`--config`), then `LATCHKEY_…` environment variables,
//! then command-line flags. Unknown keys in the file are refused; unknown `LATCHKEY_`
//! variables are reported, since a typo would otherwise be silently ignored.

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// External base URL: the issuer and the base of every link. Default: `http://` + listen.
    pub public_url: Option<String>,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Unset: the development mailbox.
    pub smtp_url: Option<String>,
    /// PEM certificates to trust for the SMTP server's TLS besides the public roots (a private CA).
    pub smtp_ca_file: Option<PathBuf>,
    /// Default sender, `Name <address>`.
    pub mail_from: String,
    /// PEM private key (PKCS#8 RSA or Ed25519, or PKCS#1 RSA) that signs every message (DKIM).
    /// Unset: a key generated on first start, stored sealed in the database.
    pub dkim_private_key_file: Option<PathBuf>,
    /// The DKIM selector: the key is published at `<selector>._domainkey.<sender domain>`.
    pub dkim_selector: String,
    /// The algorithm of a generated DKIM key: `rsa-sha256` or `ed25519-sha256`.
    pub dkim_algorithm: String,
    /// `IP:port` of the DNS server `latchkey mail test` asks for the published records.
    /// Unset: the first nameserver of /etc/resolv.conf.
    pub dns_server: Option<String>,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub secret_key: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    /// SQLite durability: `normal` survives a process crash, `full` also a power loss.
    pub sqlite_synchronous: String,
    /// PostgreSQL pool size per instance.
    pub database_max_connections: u32,
    /// PostgreSQL statement timeout, in milliseconds (0: none).
    pub database_statement_timeout_ms: u64,
    /// `text` or `json`.
    pub log_format: String,
    /// Milliseconds a client has to send the head of a request, and a kept-alive connection
    /// may stay idle before its next one.
    pub http_header_timeout_ms: u64,
    /// Milliseconds a client has to send the whole body of a request, from its head.
    pub http_body_timeout_ms: u64,
    /// Open HTTP connections at once; keep it below the descriptor limit (`ulimit -n`).
    pub http_max_connections: usize,
    /// Address of a listener that serves only `/metrics`, without the admin token.
    pub metrics_listen: Option<String>,
    /// Milliseconds a shutdown (SIGTERM) waits for requests in flight and the deliveries in
    /// hand before the process exits anyway; what is left queued is delivered by the next start.
    pub shutdown_grace_ms: u64,
    /// Seconds a browser session of the hosted sign-in lasts (default 7 days).
    pub session_lifetime_secs: u64,
    /// Seconds an address whose mail bounced (a 5xx to `RCPT TO`) gets no mail (default 30
    /// days; 0: never suppressed).
    pub mail_suppression_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            database_url: "sqlite://latchkey.db".into(),
            smtp_url: None,
            smtp_ca_file: None,
            mail_from: "Latchkey <no-reply@localhost>".into(),
            dkim_private_key_file: None,
            dkim_selector: "latchkey".into(),
            dkim_algorithm: "rsa-sha256".into(),
            dns_server: None,
            admin_token: None,
            admin_token_file: None,
            secret_key: None,
            secret_key_file: None,
            sqlite_synchronous: "normal".into(),
            database_max_connections: 16,
            database_statement_timeout_ms: 5_000,
            log_format: "text".into(),
            http_header_timeout_ms: 5_000,
            http_body_timeout_ms: 10_000,
            http_max_connections: 512,
            metrics_listen: None,
            shutdown_grace_ms: 30_000,
            session_lifetime_secs: 7 * 24 * 60 * 60,
            mail_suppression_secs: latchkey_mail::DEFAULT_SUPPRESSION.whole_seconds() as u64,
        }
    }
}

/// Redacts secrets, and the password of URLs.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("database_url", &redact_url(&self.database_url))
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("smtp_ca_file", &self.smtp_ca_file)
            .field("mail_from", &self.mail_from)
            .field("dkim_private_key_file", &self.dkim_private_key_file)
            .field("dkim_selector", &self.dkim_selector)
            .field("dkim_algorithm", &self.dkim_algorithm)
            .field("dns_server", &self.dns_server)
            .field("admin_token", &hidden(&self.admin_token))
            .field("secret_key", &hidden(&self.secret_key))
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .field("http_header_timeout_ms", &self.http_header_timeout_ms)
            .field("http_body_timeout_ms", &self.http_body_timeout_ms)
            .field("http_max_connections", &self.http_max_connections)
            .field("metrics_listen", &self.metrics_listen)
            .field("shutdown_grace_ms", &self.shutdown_grace_ms)
            .field("session_lifetime_secs", &self.session_lifetime_secs)
            .field("mail_suppression_secs", &self.mail_suppression_secs)
            .finish_non_exhaustive()
    }
}

pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

const ENV_PREFIX: &str = "LATCHKEY_";
const KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database_url",
    "smtp_url",
    "smtp_ca_file",
    "mail_from",
    "dkim_private_key_file",
    "dkim_selector",
    "dkim_algorithm",
    "dns_server",
    "admin_token",
    "admin_token_file",
    "secret_key",
    "secret_key_file",
    "sqlite_synchronous",
    "database_max_connections",
    "database_statement_timeout_ms",
    "log_format",
    "http_header_timeout_ms",
    "http_body_timeout_ms",
    "http_max_connections",
    "metrics_listen",
    "shutdown_grace_ms",
    "session_lifetime_secs",
];
/// Variables with our prefix that are not settings of the server.
const OTHER_VARS: &[&str] = &["test_database_url", "test_binary", "log"];

impl Config {
    /// Loads the layers below flags; flags are applied by the caller.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("the configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).only(KEYS));
        for (name, _) in std::env::vars() {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                let key = key.to_ascii_lowercase();
                if !KEYS.contains(&key.as_str()) && !OTHER_VARS.contains(&key.as_str()) {
                    eprintln!("warning: unknown environment variable {name} is ignored");
                }
            }
        }
        let mut config: Config = figment.extract().context("invalid configuration")?;
        config.read_secret_files()?;
        config.check_http_limits()?;
        Ok(config)
    }

    fn check_http_limits(&self) -> anyhow::Result<()> {
        if self.http_header_timeout_ms == 0 || self.http_body_timeout_ms == 0 {
            bail!("LATCHKEY_HTTP_HEADER_TIMEOUT_MS and LATCHKEY_HTTP_BODY_TIMEOUT_MS must be above 0");
        }
        if self.http_max_connections == 0 {
            bail!("LATCHKEY_HTTP_MAX_CONNECTIONS must be above 0");
        }
        if !(60..=400 * 24 * 60 * 60).contains(&self.session_lifetime_secs) {
            bail!("LATCHKEY_SESSION_LIFETIME_SECS must be between 60 seconds and 400 days");
        }
        if self.mail_suppression_secs > 10 * 365 * 24 * 60 * 60 {
            bail!("LATCHKEY_MAIL_SUPPRESSION_SECS must be at most ten years");
        }
        Ok(())
    }

    /// The bounds of the HTTP listener.
    pub fn http_limits(&self) -> crate::serve::HttpLimits {
        crate::serve::HttpLimits {
            header_timeout: std::time::Duration::from_millis(self.http_header_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.http_body_timeout_ms),
            max_connections: self.http_max_connections,
        }
    }

    fn read_secret_files(&mut self) -> anyhow::Result<()> {
        let read = |path: &Path| -> anyhow::Result<String> {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok(text.trim().to_owned())
        };
        if let (None, Some(path)) = (&self.secret_key, &self.secret_key_file) {
            self.secret_key = Some(read(path)?);
        }
        if let (None, Some(path)) = (&self.admin_token, &self.admin_token_file) {
            self.admin_token = Some(read(path)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets_and_passwords() {
        let config = Config {
            admin_token: Some("admintoken".into()),
            secret_key: Some("supersecret".into()),
            database_url: "postgres://u:hunter2@db/latchkey".into(),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("admintoken") && !shown.contains("supersecret") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_file_with_an_unknown_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("latchkey.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nlisten_typo = 1\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err();
        assert!(format!("{err:#}").contains("listen_typo"), "{err:#}");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\n").unwrap();
        assert_eq!(Config::load(Some(&file)).unwrap().listen, "127.0.0.1:9000");
        std::fs::write(
            &file,
            "smtp_url = \"smtps://smtp.internal\"\nsmtp_ca_file = \"/etc/latchkey/ca.pem\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.smtp_ca_file.as_deref(), Some(Path::new("/etc/latchkey/ca.pem")));
    }
}
