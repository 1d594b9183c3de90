//! Maintenance commands of `careslot-api` that run and exit.

use crate::app::{App, AppOptions};
use anyhow::bail;
use domain::phi::{ChainCheck, verify_chain};
use domain::settings::Settings;

/// `careslot-api verify-audit`: walks the audit log's hash chain.
pub async fn verify_audit(settings: Settings) -> anyhow::Result<()> {
    let db = domain::db::connect_settings(&settings).await?;
    match verify_chain(&db).await.map_err(|e| anyhow::anyhow!("{e}"))? {
        ChainCheck::Intact { records } => {
            println!("audit chain intact: {records} records");
            Ok(())
        }
        ChainCheck::Broken { seq, reason } => bail!("audit chain broken at record {seq}: {reason}"),
    }
}

/// `careslot-api rotate-phi-keys`: re-encrypts PHI under the newest key of
/// `CARESLOT_PHI_KEYS`. Safe to run while the API serves, and to rerun.
pub async fn rotate_phi_keys(settings: Settings) -> anyhow::Result<()> {
    let app = App::build(settings, AppOptions::default()).await?;
    let done = app
        .services
        .rotate_phi_keys(500)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "re-encrypted {} patients and {} users under key {}",
        done.patients,
        done.users,
        app.services.keyring.current_key_id()
    );
    Ok(())
}
