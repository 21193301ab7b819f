//! The migration from the legacy gallery (PostgreSQL) to the Image Service: the legacy
//! port and its PostgreSQL adapter, the field mapping, the flags, the mirror with its
//! outbox, the gallery's read routing, and the metrics. The HTTP side is `api::gallery`;
//! the commands `cli::migrate`.

pub mod backfill;
pub mod breaker;
pub mod flags;
pub mod gallery;
pub mod legacy;
pub mod mapping;
pub mod metrics;
pub mod mirror;
pub mod postgres;
pub mod reconcile;
pub mod verify;
