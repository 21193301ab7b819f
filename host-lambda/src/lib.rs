//! `imgsvc-lambda`: the hosts around `imgsvc-core` — the `imgsvc` command line and the HTTP
//! service (ports, adapters, router). The binary in `main.rs` only dispatches.

pub mod api;
pub mod auth;
pub mod cli;
pub mod edge;
pub mod lambda;
pub mod local;
pub mod migrate;
pub mod pipeline;
pub mod processor;
pub mod record;
pub mod store;
pub mod upload;
