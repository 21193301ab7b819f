//! `imgsvc migrate …`: the migration toolkit's commands, on the legacy database and the
//! Image Service's stores only (`wiring::migration`), with the same settings `serve` has
//! for them.

use super::progress::Progress;
use crate::settings::{MigrateCommand, MigrateSettings};

/// Exit status: 0 clean, 1 mismatches, 2 could not run.
pub fn run(args: MigrateSettings) -> std::process::ExitCode {
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

async fn run_async(args: MigrateSettings) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.legacy.store.legacy_database_url.is_some(),
        "IMGSVC_LEGACY_DATABASE_URL (--legacy-database-url) is required"
    );
    let json = args.json;
    let (stores, gallery) = crate::wiring::migration(&args).await?;
    let legacy = &gallery.legacy;
    let target = &stores.metadata;
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
            let mut progress =
                Progress::new("backfill", Some(legacy.count(None).await?), json, 1000);
            let report = crate::migrate::backfill::backfill(
                legacy,
                target,
                &stores.public_base_url,
                &options,
                |report| {
                    progress.update(
                        report.scanned,
                        &serde_json::json!({"written": report.written, "alreadyCurrent": report.already_current}),
                    );
                },
            )
            .await?;
            progress.finish();
            println!(
                "{}",
                serde_json::json!({"backfill": report, "rowsPerSecond": report.rows_per_second()})
            );
            Ok(0)
        }
        MigrateCommand::Reconcile { from, dry_run } => {
            use crate::migrate::reconcile;
            let sides = reconcile::load(legacy, target, 100).await?;
            let (changes, conflicts) = reconcile::plan(&sides, from);
            for conflict in &conflicts {
                println!("{}", serde_json::json!({ "conflict": conflict }));
            }
            if dry_run {
                for change in &changes {
                    println!("{}", serde_json::json!({ "plan": change.summary() }));
                }
                println!(
                    "{}",
                    serde_json::json!({"dryRun": true, "changes": changes.len(), "conflicts": conflicts.len()})
                );
                return Ok(u8::from(!conflicts.is_empty()));
            }
            if !conflicts.is_empty() {
                println!(
                    "{}",
                    serde_json::json!({
                        "refused": true,
                        "conflicts": conflicts.len(),
                        "changes": changes.len(),
                        "hint": "the same version differs on the two sides; nothing was written. \
                                 Rerun with --from postgres or --from image-service to say which side wins",
                    })
                );
                return Ok(1);
            }
            let mut progress = Progress::new("reconcile", Some(changes.len() as u64), json, 100);
            let (mut applied, mut changed_meanwhile) = (0u64, 0u64);
            for (done, change) in changes.iter().enumerate() {
                println!("{}", serde_json::json!({ "change": change.summary() }));
                if reconcile::apply(change, legacy, target, &stores.public_base_url).await? {
                    applied += 1;
                } else {
                    changed_meanwhile += 1;
                }
                progress.update(
                    done as u64 + 1,
                    &serde_json::json!({"changedMeanwhile": changed_meanwhile}),
                );
            }
            progress.finish();
            let after = crate::migrate::verify::verify(legacy, target, None, 100, |_| {}).await?;
            println!(
                "{}",
                serde_json::json!({
                    "applied": applied,
                    "changedMeanwhile": changed_meanwhile,
                    "clean": after.is_clean(),
                })
            );
            Ok(u8::from(!after.is_clean()))
        }
        MigrateCommand::Reverse => {
            let (mut copied, mut kept, mut deleted) = (0u64, 0u64, 0u64);
            let mut progress = Progress::new("reverse", None, json, 1000);
            let mut start = None;
            loop {
                let (records, next) = target.scan(start, 100).await?;
                for record in &records {
                    let row = crate::migrate::mapping::row_of(record)?;
                    if legacy.put_if_newer(&row).await? {
                        copied += 1;
                    } else {
                        kept += 1;
                    }
                }
                progress.update(copied + kept, &serde_json::json!({"copied": copied}));
                match next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
            // Deletes made in the Image Service remove their rows (a newer row stays).
            let mut start = None;
            loop {
                let (tombstones, next) = target.scan_tombstones(start, 100).await?;
                for tombstone in &tombstones {
                    if legacy.put_tombstone_if_newer(tombstone).await? {
                        deleted += 1;
                    }
                }
                match next {
                    Some(next) => start = Some(next),
                    None => break,
                }
            }
            progress.finish();
            println!(
                "{}",
                serde_json::json!({"copied": copied, "alreadyCurrent": kept, "deleted": deleted})
            );
            Ok(0)
        }
        MigrateCommand::Drain { now, wait } => {
            let started = std::time::Instant::now();
            let (mut landed, mut failed) = (0, 0);
            let mut first = true;
            loop {
                let (l, f) = gallery.mirror.drain_all(100, now && first).await?;
                first = false;
                landed += l;
                failed += f;
                let depth = legacy.outbox_depth().await?;
                let (waiting, next_at) = legacy.waiting_mirrors().await?;
                let remaining = wait.and_then(|w| w.checked_sub(started.elapsed()));
                let done = depth == 0 || remaining.is_none() || next_at.is_none();
                if done {
                    println!(
                        "{}",
                        serde_json::json!({
                            "landed": landed,
                            "failed": failed,
                            "outboxDepth": depth,
                            "waiting": waiting,
                            "nextAttemptAt": next_at.map(crate::record::iso8601),
                            "hint": (depth > 0).then_some(
                                "entries wait out their backoff: `migrate drain --now` retries them at once, `--wait 5m` keeps draining"
                            ),
                        })
                    );
                    return Ok(u8::from(depth > 0));
                }
                // Sleep until the first waiting entry is due, within what is left of --wait.
                let until_due = next_at
                    .map(|at| at - time::OffsetDateTime::now_utc())
                    .and_then(|d| std::time::Duration::try_from(d).ok())
                    .unwrap_or_default();
                let pause = until_due
                    .max(std::time::Duration::from_millis(100))
                    .min(remaining.unwrap_or_default());
                tokio::time::sleep(pause).await;
            }
        }
        MigrateCommand::Verify {
            since,
            all: _,
            report,
        } => {
            let since = since.map(|ago| time::OffsetDateTime::now_utc() - ago);
            let mut progress = Progress::new("verify", Some(legacy.count(since).await?), json, 100);
            let result = crate::migrate::verify::verify(legacy, target, since, 100, |report| {
                progress.update(
                    report.total,
                    &serde_json::json!({"missing": report.missing.len(), "mismatched": report.mismatched.len()}),
                );
            })
            .await?;
            progress.finish();
            let summary = serde_json::json!({
                "total": result.total,
                "matched": result.matched,
                "missing": result.missing.len(),
                "mismatched": result.mismatched.len(),
                "deletedInImageService": result.deleted_in_image_service.len(),
                "onlyInImageService": result.only_in_image_service.len(),
                "deletedInPostgres": result.deleted_in_postgres.len(),
                "successRate": result.success_rate(),
                "hint": (!result.is_clean()).then_some(
                    "`migrate reconcile --dry-run` shows what reconcile would change (docs/migration.md)"
                ),
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
