//! Parse errors, printed like pfctl's: `FILE:LINE: message`.

/// One problem found in a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Joins errors one per line, the way pfctl reports them.
pub fn format_errors(errors: &[ParseError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}
