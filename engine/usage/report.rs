//! Usage reports: the store's aggregates summed by day, model, key or user, with costs as
//! decimal USD strings (the body of `GET /v1/usage`).

use super::store::{Row, Totals, usd};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What rows are summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// UTC day.
    Day,
    /// Model alias.
    Model,
    /// API key id (`null` for calls made with a token).
    Key,
    /// User name.
    User,
}

impl GroupBy {
    /// From the query parameter.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "day" => GroupBy::Day,
            "model" => GroupBy::Model,
            "key" => GroupBy::Key,
            "user" => GroupBy::User,
            _ => return None,
        })
    }

    /// The parameter's value and the rows' field name.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Day => "day",
            GroupBy::Model => "model",
            GroupBy::Key => "key",
            GroupBy::User => "user",
        }
    }

    fn of(self, row: &Row) -> &str {
        match self {
            GroupBy::Day => &row.day,
            GroupBy::Model => &row.model,
            GroupBy::Key => &row.key,
            GroupBy::User => &row.user,
        }
    }
}

/// Totals as JSON: counts and `cost_usd` as a decimal string.
#[derive(Debug, Serialize)]
pub struct TotalsJson {
    /// Calls.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cache reads.
    pub cache_read_tokens: u64,
    /// Cache writes.
    pub cache_write_tokens: u64,
    /// USD, exact.
    pub cost_usd: String,
}

impl From<&Totals> for TotalsJson {
    fn from(t: &Totals) -> Self {
        Self {
            requests: t.requests,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cache_read_tokens: t.cache_read_tokens,
            cache_write_tokens: t.cache_write_tokens,
            cost_usd: usd(t.cost_nanos),
        }
    }
}

/// Sums `rows` by `by`: the grand total and one total per group, days in order, the other
/// groupings by cost (highest first), then name.
pub fn summarize(rows: &[Row], by: GroupBy) -> (Totals, Vec<(String, Totals)>) {
    let mut total = Totals::default();
    let mut groups: BTreeMap<&str, Totals> = BTreeMap::new();
    for row in rows {
        total.add(&row.totals);
        groups.entry(by.of(row)).or_default().add(&row.totals);
    }
    let mut out: Vec<(String, Totals)> = groups
        .into_iter()
        .map(|(k, t)| (k.to_string(), t))
        .collect();
    if by != GroupBy::Day {
        out.sort_by(|a, b| b.1.cost_nanos.cmp(&a.1.cost_nanos).then(a.0.cmp(&b.0)));
    }
    (total, out)
}

/// The JSON body of a report.
pub fn to_json(
    rows: &[Row],
    by: GroupBy,
    from: &str,
    to: &str,
    user: Option<&str>,
) -> Result<Value, serde_json::Error> {
    let (total, groups) = summarize(rows, by);
    let mut data = Vec::with_capacity(groups.len());
    for (name, t) in &groups {
        let mut row = Map::new();
        let name = if by == GroupBy::Key && name.is_empty() {
            Value::Null
        } else {
            Value::String(name.clone())
        };
        row.insert(by.as_str().to_string(), name);
        if let Value::Object(fields) = serde_json::to_value(TotalsJson::from(t))? {
            row.extend(fields);
        }
        data.push(Value::Object(row));
    }
    Ok(json!({
        "object": "usage",
        "from": from,
        "to": to,
        "group_by": by.as_str(),
        "user": user,
        "total": TotalsJson::from(&total),
        "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: &str, user: &str, key: &str, model: &str, cost: i64) -> Row {
        Row {
            day: day.into(),
            user: user.into(),
            key: key.into(),
            model: model.into(),
            totals: Totals {
                requests: 1,
                input_tokens: 10,
                output_tokens: 5,
                cost_nanos: cost,
                ..Totals::default()
            },
            session: None,
        }
    }

    #[test]
    fn sums_by_group() {
        let rows = [
            row("2026-11-02", "a", "k1", "m1", 5),
            row("2026-11-01", "a", "", "m2", 7),
            row("2026-11-02", "b", "k2", "m2", 1_000_000_001),
        ];
        let v = to_json(&rows, GroupBy::Day, "2026-11-01", "2026-11-30", None).unwrap();
        assert_eq!(v["total"]["cost_usd"], "1.000000013");
        assert_eq!(v["total"]["requests"], 3);
        assert_eq!(v["data"][0]["day"], "2026-11-01");
        assert_eq!(v["data"][1]["cost_usd"], "1.000000006");
        let v = to_json(&rows, GroupBy::Model, "a", "b", Some("a")).unwrap();
        assert_eq!(v["data"][0]["model"], "m2");
        assert_eq!(v["data"][0]["input_tokens"], 20);
        assert_eq!(v["user"], "a");
        let v = to_json(&rows, GroupBy::Key, "a", "b", None).unwrap();
        assert_eq!(v["data"][1]["key"], Value::Null);
        assert_eq!(v["data"][2]["key"], "k1");
    }
}
