//! The OpenAI-compatible API.

pub mod chat;
pub mod models;
pub mod types;
