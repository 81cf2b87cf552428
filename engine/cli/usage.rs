//! `pennyworth usage`: the caller's usage and cost (or a user's, or everyone's, as policies
//! allow) from `GET /v1/usage`, as a table or `--json`.

use super::client::CliError;
use super::{Remote, api, encode, output};
use reqwest::Method;
use serde_json::Value;

/// `pennyworth usage`.
#[derive(Debug, Clone, clap::Args)]
pub struct UsageArgs {
    /// First day, YYYY-MM-DD (default: the first of this month, UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Rows per day, model, key or user.
    #[arg(long, default_value = "day", value_parser = ["day", "model", "key", "user"])]
    pub by: String,
    /// Another user's usage.
    #[arg(long, conflicts_with = "all")]
    pub user: Option<String>,
    /// Everyone's usage.
    #[arg(long)]
    pub all: bool,
}

/// The query string of a request.
pub fn query(args: &UsageArgs) -> String {
    let mut q = format!("group_by={}", encode(&args.by));
    for (name, value) in [("from", &args.from), ("to", &args.to), ("user", &args.user)] {
        if let Some(v) = value {
            q.push_str(&format!("&{name}={}", encode(v)));
        }
    }
    if args.all {
        q.push_str("&all=true");
    }
    q
}

fn row(first: String, t: &Value) -> Vec<String> {
    vec![
        first,
        output::cell(&t["requests"]),
        output::cell(&t["input_tokens"]),
        output::cell(&t["output_tokens"]),
        output::cell(&t["cache_read_tokens"]),
        output::cell(&t["cache_write_tokens"]),
        output::cell(&t["cost_usd"]),
    ]
}

/// Runs the command.
pub async fn usage(remote: &Remote, args: UsageArgs) -> Result<(), CliError> {
    let v = api(remote)
        .await?
        .call(Method::GET, &format!("/usage?{}", query(&args)), None)
        .await?;
    if remote.json {
        output::json(&v);
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = v["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| row(output::cell(&r[args.by.as_str()]), r))
        .collect();
    rows.push(row("total".to_string(), &v["total"]));
    output::table(
        &[
            &args.by,
            "requests",
            "input",
            "output",
            "cache read",
            "cache write",
            "cost usd",
        ],
        &rows,
    );
    Ok(())
}
