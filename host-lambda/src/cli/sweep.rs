//! `imgsvc sweep`: the server's sweep as a one-off command — expired staged originals and
//! image objects no record names (what a killed upload leaves) — on the stores `serve`
//! uses. On S3 this is the only orphan sweep (`serve` sweeps orphans on embedded storage
//! only); run it from a schedule.

use anyhow::Context;

use crate::migrate::legacy::LegacyStore;
use crate::settings::SweepSettings;
use crate::store::{BlobStore, MetadataStore};

pub fn run(settings: SweepSettings) -> anyhow::Result<()> {
    super::serve::init_logging(&settings.runtime);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let aws =
            crate::store::aws::aws_sdk_config(&settings.stores.aws_timeouts.aws_timeouts()).await;
        let storage = crate::wiring::storage(&settings.stores, &aws);
        let public_url = settings.stores.public_url.clone().unwrap_or_default();
        let stores =
            crate::wiring::stores(&settings.stores.data_dir, &public_url, &storage, &aws).await?;
        let legacy = crate::wiring::legacy_store(&settings.legacy).await?;
        let grace = Grace {
            upload: settings.sweep.upload_grace_seconds(),
            orphan: settings.sweep.orphan_grace_seconds(),
        };
        let (staged, orphaned) = sweep_once(
            stores.blobs.as_ref(),
            stores.metadata.as_ref(),
            legacy.as_deref(),
            grace,
            true,
            !settings.dry_run,
        )
        .await?;
        println!(
            "{}",
            serde_json::json!({
                "stagedRemoved": staged,
                "orphans": orphaned,
                "removed": !settings.dry_run,
            })
        );
        Ok(())
    })
}

/// The sweep's grace periods, in seconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grace {
    /// After a staged upload's URL expired.
    pub upload: i64,
    /// After an image object with no record was written.
    pub orphan: i64,
}

/// One sweep: expired staged originals, then (`orphans`) orphaned image objects; removes
/// them when `delete`, else only reports. How many of each.
pub(super) async fn sweep_once(
    blobs: &dyn BlobStore,
    metadata: &dyn MetadataStore,
    legacy: Option<&dyn LegacyStore>,
    grace: Grace,
    orphans: bool,
    delete: bool,
) -> anyhow::Result<(usize, usize)> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let staged = if delete {
        crate::upload::sweep_staging(blobs, grace.upload, now)
            .await
            .context("sweeping staged originals")?
    } else {
        0
    };
    let mut orphaned = 0;
    if orphans {
        let keys = crate::upload::sweep_orphans(blobs, metadata, legacy, now, grace.orphan, delete)
            .await
            .context("sweeping orphaned objects")?;
        for key in &keys {
            tracing::info!(key = %key, removed = delete, "orphaned object");
        }
        orphaned = keys.len();
    }
    if staged + orphaned > 0 {
        tracing::info!(staged, orphaned, removed = delete, "swept");
    }
    Ok((staged, orphaned))
}
