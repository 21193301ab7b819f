//! The HTTP API's contract suite, over real HTTP on an ephemeral port: every store-touching
//! case runs twice, on the embedded stores (filesystem + SQLite) and on S3 + DynamoDB
//! through the real SDK against the emulator, with failures injected through the ports.
//! One test binary, one file per topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The harness shared with the other test binaries (`tests/common/`).
#[path = "../common/mod.rs"]
mod common;
mod harness;

mod auth;
mod edge;
mod failures;
mod idempotency;
mod images;
mod two_step;
