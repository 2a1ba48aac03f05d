//! A strict reader of the Prometheus text format (0.0.4), for `softnet
//! top` (which reads the daemon's exposition over the control socket) and
//! the tests: `# HELP` and `# TYPE` before each family's samples, every
//! sample of the family just typed, names and label names as the format
//! allows them, label values with their escapes, a number for a value.

use std::collections::HashSet;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    /// counter, gauge, untyped, ...
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
pub fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    !s.starts_with("__")
        && c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// A sample's labels, in order.
pub type Labels = Vec<(String, String)>;

/// Parses `k="v",...}`; returns the labels and what follows the brace.
fn parse_labels(s: &str, line: usize) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let (k, r) = rest.split_once("=\"").ok_or(format!("line {line}: bad label in {s:?}"))?;
        if !valid_label_name(k) {
            return Err(format!("line {line}: bad label name {k:?}"));
        }
        let mut v = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("line {line}: unterminated label value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => v.push('\n'),
                    Some((_, '\\')) => v.push('\\'),
                    Some((_, '"')) => v.push('"'),
                    _ => return Err(format!("line {line}: bad escape in a label value")),
                },
                Some((_, c)) => v.push(c),
            }
        };
        if labels.iter().any(|(x, _): &(String, String)| x == k) {
            return Err(format!("line {line}: label {k:?} twice"));
        }
        labels.push((k.to_string(), v));
        rest = &r[end + 1..];
        if !rest.starts_with(',') && !rest.starts_with('}') {
            return Err(format!("line {line}: expected , or }} after a label"));
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Parses an exposition; the first error names its line.
pub fn parse(text: &str) -> Result<Vec<Family>, String> {
    let mut fams: Vec<Family> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut help: Option<(String, String)> = None;
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.is_empty() {
            continue;
        }
        if let Some(r) = l.strip_prefix("# HELP ") {
            let (n, h) = r.split_once(' ').unwrap_or((r, ""));
            help = Some((n.to_string(), h.to_string()));
            continue;
        }
        if let Some(r) = l.strip_prefix("# TYPE ") {
            let (n, k) = r.split_once(' ').ok_or(format!("line {line}: TYPE without a type"))?;
            if !valid_metric_name(n) {
                return Err(format!("line {line}: bad metric name {n:?}"));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&k) {
                return Err(format!("line {line}: unknown type {k:?}"));
            }
            if !seen.insert(n.to_string()) {
                return Err(format!("line {line}: family {n} twice"));
            }
            let h = match help.take() {
                Some((hn, h)) if hn == n => h,
                _ => return Err(format!("line {line}: {n} has no HELP just before its TYPE")),
            };
            fams.push(Family { name: n.to_string(), help: h, kind: k.to_string(), samples: Vec::new() });
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        let Some(fam) = fams.last_mut() else { return Err(format!("line {line}: a sample before any TYPE")) };
        let name_end = l.find(['{', ' ']).ok_or(format!("line {line}: no value"))?;
        let name = &l[..name_end];
        let (labels, rest) = if l[name_end..].starts_with('{') {
            parse_labels(&l[name_end + 1..], line)?
        } else {
            (Vec::new(), &l[name_end..])
        };
        let mut words = rest.split_whitespace();
        let value = words.next().and_then(parse_value).ok_or(format!("line {line}: bad value in {l:?}"))?;
        // An optional timestamp, nothing else.
        if words.next().is_some_and(|t| t.parse::<i64>().is_err()) || words.next().is_some() {
            return Err(format!("line {line}: trailing words in {l:?}"));
        }
        if name != fam.name {
            return Err(format!("line {line}: sample {name} under family {}", fam.name));
        }
        if fam.samples.iter().any(|s| s.labels == labels) {
            return Err(format!("line {line}: {name} with the same labels twice"));
        }
        fam.samples.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(fams)
}

/// The samples of one family.
pub fn family<'a>(fams: &'a [Family], name: &str) -> Option<&'a Family> {
    fams.iter().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_text_parses_with_escapes() {
        let t =
            "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\",y=\"2\"} 3\na_total 4 1700000000\n";
        let f = parse(t).unwrap();
        assert_eq!(f[0].samples[0].label("x"), Some("q\"\\\n"));
        assert_eq!(f[0].samples[1].value, 4.0);
    }

    #[test]
    fn malformed_text_is_refused_with_its_line() {
        for (t, want) in [
            ("a 1\n", "line 1: a sample before any TYPE"),
            ("# TYPE a counter\n", "line 1: a has no HELP"),
            ("# HELP a x\n# TYPE a counter\nb 1\n", "line 3: sample b under family a"),
            ("# HELP a x\n# TYPE a counter\na{1x=\"\"} 1\n", "bad label name"),
            ("# HELP a x\n# TYPE a counter\na{x=\"1} 1\n", "unterminated"),
            ("# HELP a x\n# TYPE a counter\na one\n", "bad value"),
            ("# HELP a x\n# TYPE a counter\na 1\na 2\n", "same labels twice"),
            ("# HELP a x\n# TYPE a counter\n# HELP a x\n# TYPE a counter\n", "family a twice"),
            ("# HELP 1a x\n# TYPE 1a counter\n", "bad metric name"),
            ("# HELP a x\n# TYPE a thing\n", "unknown type"),
        ] {
            let e = parse(t).unwrap_err();
            assert!(e.contains(want), "{t:?}: {e}");
        }
    }
}
