//! Pennyworth: an OpenAI-compatible gateway over AWS Bedrock and other LLMs, driven by
//! `routes.yaml`, `models.yaml` and Cedar policies compiled once into an immutable [`Engine`].
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod aws;
pub mod body;
pub mod cli;
pub mod config;
pub mod directory;
pub mod engine;
pub mod errors;
pub mod handlers;
pub mod ids;
pub mod inference;
pub mod lambda;
pub mod memory;
pub mod metrics;
pub mod policy;
pub mod providers;
pub mod resource;
pub mod router;
pub mod server;
pub mod telemetry;
pub mod upstream;
pub mod usage;

pub use engine::{CompiledConfig, Engine};
