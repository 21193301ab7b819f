//! `imgsvc token --user NAME`: a development token signed with the local server's secret.

use crate::settings::TokenSettings;

pub fn run(args: &TokenSettings) -> anyhow::Result<()> {
    crate::record::validate_id("user", &args.user)?;
    let secret = crate::wiring::secret(&args.data_dir, args.secret.jwt_secret.as_deref())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = crate::wiring::authenticator(&secret).issue(
        &args.user,
        args.service,
        now,
        args.hours.saturating_mul(3600),
    )?;
    println!("{token}");
    Ok(())
}
