//! Config diagnostics: every error names its file and, where there is one, its line.

use std::fmt;

/// One config problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name relative to the config directory.
    pub file: String,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// What is wrong (lowercase, no final period).
    pub message: String,
}

impl ConfigError {
    /// A new diagnostic.
    pub fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config directory, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Adds one problem.
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }

    /// Orders problems by file (in order of first appearance), then line.
    pub fn sort(&mut self) {
        let mut files: Vec<String> = Vec::new();
        for e in &self.0 {
            if !files.contains(&e.file) {
                files.push(e.file.clone());
            }
        }
        self.0.sort_by_key(|e| {
            (
                files
                    .iter()
                    .position(|f| *f == e.file)
                    .unwrap_or(usize::MAX),
                e.line.unwrap_or(0),
            )
        });
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when empty, the errors otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The 1-based line of a byte offset in `text`.
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The 1-based line of the first line containing every needle of `path` in turn: the first
/// needle's line, then the first line at or after it containing the second, and so on.
///
/// serde keeps no positions once a document is deserialized, so cross-reference checks use
/// this to point at the key they complain about (e.g. `["  claude:", "fallbacks:"]`).
pub fn locate(text: &str, path: &[&str]) -> Option<usize> {
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    for needle in path {
        let found = lines
            .iter()
            .enumerate()
            .skip(start)
            .find(|(_, l)| {
                let code = l.split(" #").next().unwrap_or(l);
                !l.trim_start().starts_with('#') && code.contains(needle)
            })
            .map(|(i, _)| i)?;
        start = found;
    }
    Some(start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys() {
        let text = "models:\n  a:\n    provider: echo\n  b:\n    provider: x\n";
        assert_eq!(locate(text, &["  b:", "provider:"]), Some(5));
        assert_eq!(locate(text, &["  c:"]), None);
        assert_eq!(line_of_offset(text, 0), 1);
        assert_eq!(line_of_offset(text, 8), 2);
    }

    #[test]
    fn display_names_file_and_line() {
        let e = ConfigError::new("models.yaml", Some(14), "unknown field `prise`");
        assert_eq!(e.to_string(), "models.yaml:14: unknown field `prise`");
    }
}
