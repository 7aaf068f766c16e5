//! The DKIM key of this server: the configured PEM file, or the key generated on first start
//! and stored sealed in the database (like the signing keys), the same for every instance.

use crate::Config;
use anyhow::{Context, bail};
use latchkey_core::{Clock, MasterKey};
use latchkey_mail::{DkimAlgorithm, DkimSigner};
use latchkey_store::{Store, StoredDkimKey};

fn seal_context(selector: &str) -> String {
    format!("dkim-key:{selector}")
}

pub async fn signer(
    config: &Config,
    store: &dyn Store,
    key: &MasterKey,
    clock: &dyn Clock,
) -> anyhow::Result<DkimSigner> {
    let selector = config.dkim_selector.trim();
    if selector.is_empty() || !selector.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        bail!("LATCHKEY_DKIM_SELECTOR must be letters, digits, dots and hyphens");
    }
    if let Some(path) = &config.dkim_private_key_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("LATCHKEY_DKIM_PRIVATE_KEY_FILE: cannot read {}", path.display()))?;
        return DkimSigner::from_pem(selector, &pem).context("LATCHKEY_DKIM_PRIVATE_KEY_FILE");
    }
    let algorithm = DkimAlgorithm::parse(&config.dkim_algorithm)
        .context("LATCHKEY_DKIM_ALGORITHM must be rsa-sha256 or ed25519-sha256")?;
    let stored = match store.dkim_key(selector).await.context("cannot read the DKIM key")? {
        Some(stored) => stored,
        None => {
            let generated = DkimSigner::generate(algorithm)?;
            let fresh = StoredDkimKey {
                selector: selector.to_owned(),
                algorithm: algorithm.as_str().to_owned(),
                sealed_pkcs8: key.seal(&seal_context(selector), &generated.0),
                created_at: clock.now(),
            };
            let stored = store.insert_dkim_key(&fresh).await.context("cannot store the DKIM key")?;
            if stored == fresh {
                tracing::info!(
                    selector,
                    algorithm = algorithm.as_str(),
                    "generated a DKIM key; publish it (`latchkey mail dns`)"
                );
            }
            stored
        }
    };
    let der = key
        .unseal(&seal_context(selector), &stored.sealed_pkcs8)
        .context("the stored DKIM key cannot be unsealed with this master key")?;
    Ok(DkimSigner::from_pkcs8(selector, &der)?)
}
