//! The one test harness: what more than one test file needs (cargo builds each
//! `tests/*.rs` alone; this folder is not a test of its own).
//!
//! - [`served`]: the real `imgsvc serve` binary on an ephemeral port, hermetic environment.
//! - [`aws`]: the S3/DynamoDB emulator's endpoint and SDK settings.
//! - [`fresh_database`]: a fresh PostgreSQL database per test.
//!
//! Images forged in code, the hostile corpus and the shared photos are in the
//! `imgsvc-testkit` dev-crate.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod aws;
pub mod served;

/// A fresh database on the PostgreSQL server `scripts/test` makes sure of.
pub async fn fresh_database() -> String {
    let admin = std::env::var("IMGSVC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!(
        "imgsvc_test_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let pool = sqlx::PgPool::connect(&admin).await.expect(
        "PostgreSQL not reachable: scripts/test starts it (or set IMGSVC_TEST_DATABASE_URL)",
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&pool)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
