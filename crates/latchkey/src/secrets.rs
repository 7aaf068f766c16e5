//! The master secret: given by the operator, or generated once and kept beside the SQLite file.

use crate::Config;
use crate::storage::Database;
use anyhow::{Context, bail};
use latchkey_core::MasterKey;
use std::path::Path;

pub fn master_key(config: &Config, database: &Database) -> anyhow::Result<MasterKey> {
    if let Some(secret) = &config.secret_key {
        return MasterKey::from_secret(secret).context("LATCHKEY_SECRET_KEY");
    }
    let Database::Sqlite(db_path) = database else {
        bail!(
            "set LATCHKEY_SECRET_KEY (or LATCHKEY_SECRET_KEY_FILE) when using PostgreSQL: every instance must share it"
        );
    };
    let path = db_path.with_extension("secret");
    let secret = if path.exists() {
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        let secret = MasterKey::generate_secret();
        write_private(&path, &secret)?;
        tracing::info!(path = %path.display(), "generated a master secret");
        secret
    };
    MasterKey::from_secret(&secret).with_context(|| format!("the master secret in {}", path.display()))
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
