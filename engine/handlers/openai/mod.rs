//! The OpenAI-compatible API.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod fallback;
mod ids;
pub mod models;
pub mod to_core;
pub mod tools;
pub mod types;
