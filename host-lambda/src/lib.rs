//! `imgsvc-lambda`: the hosts around `imgsvc-core` — the `imgsvc` command line and the HTTP
//! service. The binary in `main.rs` only parses the settings and dispatches.
//!
//! Dependencies point one way (ARCHITECTURE.md; `scripts/check-boundaries` checks it):
//! `cli` → `wiring`, `settings` → `api` → the use cases (`upload`, `app`, `migrate`) →
//! ports and adapters (`store`, `processor`, `pipeline`, `auth`, `cursor`, `record`,
//! `telemetry`, `allocator`).

pub mod allocator;
pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cursor;
pub mod migrate;
pub mod pipeline;
pub mod processor;
pub mod record;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod upload;
pub mod wiring;
