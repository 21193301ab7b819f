//! `imgsvc migrate …`: the migration toolkit's commands, on the same configuration as
//! `serve` (the legacy database and the Image Service's stores).

use clap::{Args, Subcommand};

use super::serve::ServeArgs;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Retry every pending mirror in the outbox until none is due.
    Drain,
    /// Copy every legacy row to the Image Service in batches, never overwriting a newer
    /// version, checkpointing after each batch.
    Backfill {
        #[arg(long, default_value_t = 25)]
        batch_size: usize,
        /// At most this many rows per second.
        #[arg(long)]
        rate: Option<f64>,
        /// Read and map everything, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Continue after the last checkpoint instead of starting over.
        #[arg(long)]
        resume: bool,
    },
    /// Repair what verify finds, from PostgreSQL (the source of truth): copy missing
    /// records, rewrite mismatched ones, remove records that have no legacy row.
    Reconcile,
    /// Copy the Image Service back to PostgreSQL (rollback after legacy writes stopped);
    /// a row is only replaced by a newer version.
    Reverse,
    /// Compare every legacy row with its Image Service record. Exit 0 on a 100 % match,
    /// 1 on mismatches or missing records, 2 when it could not run.
    Verify {
        /// Only rows updated within this long (`1h`, `30m`, `2d`).
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "all")]
        since: Option<std::time::Duration>,
        /// Every row (the default).
        #[arg(long)]
        all: bool,
        /// Write the full report (every missing id and mismatched field) here as JSON.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

/// Exit status: 0 clean, 1 mismatches, 2 could not run.
pub fn run(args: MigrateArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(run_async(args)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run_async(args: MigrateArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.serve.legacy_database_url.is_some(),
        "IMGSVC_LEGACY_DATABASE_URL (--legacy-database-url) is required"
    );
    let public_url = args.serve.public_url.clone().unwrap_or_default();
    let state = super::serve::app_state(args.serve, &public_url, false).await?;
    let Some(gallery) = state.gallery.clone() else {
        anyhow::bail!("no legacy gallery configured");
    };
    match args.command {
        MigrateCommand::Backfill {
            batch_size,
            rate,
            dry_run,
            resume,
        } => {
            let options = crate::migrate::backfill::BackfillOptions {
                batch_size,
                rate,
                dry_run,
                resume,
            };
            let mut last_reported = 0;
            let report = crate::migrate::backfill::backfill(
                &gallery.legacy,
                &state.metadata,
                &state.public_base_url,
                &options,
                |report| {
                    if report.scanned >= last_reported + 1000 {
                        eprintln!("{}", serde_json::json!({"progress": report}));
                        last_reported = report.scanned;
                    }
                },
            )
            .await?;
            println!(
                "{}",
                serde_json::json!({"backfill": report, "rowsPerSecond": report.rows_per_second()})
            );
            Ok(0)
        }
        MigrateCommand::Reconcile => {
            let found =
                crate::migrate::verify::verify(&gallery.legacy, &state.metadata, None, 100, |_| {})
                    .await?;
            for id in found
                .missing
                .iter()
                .chain(found.mismatched.iter().map(|m| &m.id))
            {
                // A mismatch at the same version would be skipped by the version
                // condition: remove the record first, then copy the row.
                state.metadata.delete(id).await?;
                gallery.mirror.sync(id).await?;
            }
            for id in &found.only_in_image_service {
                state.metadata.delete(id).await?;
            }
            let after =
                crate::migrate::verify::verify(&gallery.legacy, &state.metadata, None, 100, |_| {})
                    .await?;
            println!(
                "{}",
                serde_json::json!({
                    "repaired": found.missing.len() + found.mismatched.len(),
                    "removed": found.only_in_image_service.len(),
                    "clean": after.is_clean(),
                })
            );
            Ok(u8::from(!after.is_clean()))
        }
        MigrateCommand::Reverse => {
            let (mut copied, mut kept) = (0u64, 0u64);
            let mut start = None;
            loop {
                let (records, next) = state.metadata.scan(start, 100).await?;
                for record in &records {
                    let row = crate::migrate::mapping::row_of(record)?;
                    if gallery.legacy.put_if_newer(&row).await? {
                        copied += 1;
                    } else {
                        kept += 1;
                    }
                }
                match next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
            println!(
                "{}",
                serde_json::json!({"copied": copied, "alreadyCurrent": kept})
            );
            Ok(0)
        }
        MigrateCommand::Drain => {
            let (landed, failed) = gallery.mirror.drain_all(100).await?;
            let depth = gallery.legacy.outbox_depth().await?;
            println!(
                "{}",
                serde_json::json!({"landed": landed, "failed": failed, "outboxDepth": depth})
            );
            Ok(u8::from(depth > 0))
        }
        MigrateCommand::Verify {
            since,
            all: _,
            report,
        } => {
            let since = since.map(|ago| time::OffsetDateTime::now_utc() - ago);
            let mut next_progress = 100;
            let result = crate::migrate::verify::verify(
                &gallery.legacy,
                &state.metadata,
                since,
                100,
                |report| {
                    if report.total >= next_progress {
                        eprintln!(
                            "{}",
                            serde_json::json!({"progress": report.total, "missing": report.missing.len(), "mismatched": report.mismatched.len()})
                        );
                        next_progress += 100;
                    }
                },
            )
            .await?;
            let summary = serde_json::json!({
                "total": result.total,
                "matched": result.matched,
                "missing": result.missing.len(),
                "mismatched": result.mismatched.len(),
                "onlyInImageService": result.only_in_image_service.len(),
                "successRate": result.success_rate(),
            });
            println!("{summary}");
            for id in &result.missing {
                eprintln!("{}", serde_json::json!({"missing": id}));
            }
            for mismatch in &result.mismatched {
                eprintln!("{}", serde_json::json!({"mismatch": mismatch}));
            }
            if let Some(path) = report {
                std::fs::write(&path, serde_json::to_vec_pretty(&result)?)?;
            }
            Ok(u8::from(!result.is_clean()))
        }
    }
}
