//! `imgsvc-testkit`: what tests in more than one crate need, written once.
//!
//! - [`forge`]: images built in code (no binary fixtures): test cards, gradients, JPEGs with
//!   EXIF or ICC, animated GIFs, raw PNG chunks, lossy WebP (libwebp's simple API).
//! - [`inspect`]: readers for checking outputs (WebP chunks, decoding).
//! - [`photos`]: the shared corpus of real photos (`../shared/corpus` beside the project).
//! - [`hostile`]: the hostile corpus, each case with the outcome the service must give.
//!
//! A dev-dependency only (never in a shipped binary), so panicking on a broken fixture is
//! the right answer: a fixture that can't be built is a broken test, not an input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod forge;
pub mod hostile;
pub mod inspect;
pub mod photos;
