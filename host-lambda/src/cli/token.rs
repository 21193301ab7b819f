//! `imgsvc token --user NAME`: a development token signed with the local server's secret.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user the token is for (its `sub` claim).
    #[arg(long)]
    pub user: String,
    /// The data directory of the server that will check the token.
    #[arg(long, env = "IMGSVC_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Lifetime in hours.
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// Add the service scope, which may act for any user.
    #[arg(long)]
    pub service: bool,
}

pub fn run(args: &TokenArgs) -> anyhow::Result<()> {
    crate::record::validate_id("user", &args.user)?;
    let secret = crate::local::secret(&args.data_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = crate::local::authenticator(&secret).issue(
        &args.user,
        args.service,
        now,
        args.hours.saturating_mul(3600),
    )?;
    println!("{token}");
    Ok(())
}
