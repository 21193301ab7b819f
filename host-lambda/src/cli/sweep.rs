//! `imgsvc sweep`: the server's sweep as a one-off command — expired staged originals and
//! image objects no record names (what a killed upload leaves) — on the same settings as
//! `serve`. On S3 this is the only orphan sweep (`serve` sweeps orphans on embedded storage
//! only); run it from a schedule.

use clap::Args;

use super::serve::ServeArgs;

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Report what would be removed (logged per key); remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub fn run(args: SweepArgs) -> anyhow::Result<()> {
    super::serve::init_logging();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let public_url = args.serve.public_url.clone().unwrap_or_default();
        let state = super::serve::app_state(args.serve, &public_url, false).await?;
        let (staged, orphaned) = super::serve::sweep_once(&state, true, !args.dry_run).await?;
        println!(
            "{}",
            serde_json::json!({
                "stagedRemoved": staged,
                "orphans": orphaned,
                "removed": !args.dry_run,
            })
        );
        Ok(())
    })
}
