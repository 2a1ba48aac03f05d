//! Parse errors, printed like pfctl's: `FILE:LINE: message`.

/// One problem found in a ruleset. Line 0 is a note pfctl prints without a
/// place (its host lookup's `no IP address found for …`), followed by the
/// located error it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ParseError {}

/// Joins errors one per line, the way pfctl reports them.
pub fn format_errors(errors: &[ParseError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}
