//! Human tables by default, JSON with `--json`.

use serde_json::Value;
use std::io::Write;

/// Writes one line to stdout. A closed stdout (`pennyworth keys list | head -1`) is not an
/// error worth a panic: the line is dropped.
pub fn line(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Prints rows under headers, columns aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let row_line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        line(padded.join("  ").trim_end());
    };
    row_line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        row_line(row.clone());
    }
}

/// A JSON value as a cell: strings bare, null as `-`, arrays comma-joined.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            if items.is_empty() {
                "-".to_string()
            } else {
                items.iter().map(cell).collect::<Vec<_>>().join(",")
            }
        }
        other => other.to_string(),
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM` UTC, or `-`.
pub fn time(v: &Value) -> String {
    let Some(secs) = v.as_i64() else {
        return "-".to_string();
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Pretty JSON.
pub fn json(v: &Value) {
    line(serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_cells() {
        assert_eq!(time(&Value::from(0)), "1970-01-01 00:00");
        assert_eq!(time(&Value::from(1_795_431_116)), "2026-11-23 10:51");
        assert_eq!(time(&Value::Null), "-");
        assert_eq!(cell(&serde_json::json!(["a", "b"])), "a,b");
        assert_eq!(cell(&serde_json::json!([])), "-");
    }
}
