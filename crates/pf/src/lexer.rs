//! Tokens of pf.conf: words, quoted strings, punctuation and newlines, with
//! comments and backslash-newline continuations removed.
//!
//! Like pfctl's lexer, `$name` is expanded here: the macro's value is lexed
//! again in place, so a macro may hold a list (`"{ a b }"`) or a whole rule
//! fragment. Inside `{ }` newlines are skipped, so lists may span lines.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An unquoted word (names, numbers, addresses, `tcp.first`, `1000:2000`).
    Word(String),
    /// A "quoted" or 'quoted' string.
    Quoted(String),
    /// `{ } ( ) < > ! = / ,` and `!= <= >= <> ><`.
    Punct(&'static str),
    Newline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

impl Token {
    pub fn word(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) => Some(w),
            _ => None,
        }
    }
    /// Text of a word or a quoted string.
    pub fn string(&self) -> Option<&str> {
        match &self.tok {
            Tok::Word(w) | Tok::Quoted(w) => Some(w),
            _ => None,
        }
    }
    pub fn is_punct(&self, p: &str) -> bool {
        matches!(&self.tok, Tok::Punct(q) if *q == p)
    }
    pub fn is_word(&self, w: &str) -> bool {
        matches!(&self.tok, Tok::Word(x) if x == w)
    }
    /// pfctl's lexer makes an unquoted run of digits (with an optional
    /// leading `-`) a NUMBER token, which the grammar refuses where it
    /// wants a STRING (`label 88`, `tag 57`).
    pub fn is_number(&self) -> bool {
        match &self.tok {
            Tok::Word(w) => {
                let d = w.strip_prefix('-').unwrap_or(w);
                !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        }
    }
    #[cfg(test)]
    pub fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => w.clone(),
            Tok::Quoted(w) => format!("\"{w}\""),
            Tok::Punct(p) => p.to_string(),
            Tok::Newline => "end of line".into(),
        }
    }
}

/// pfctl's lexer reads a token into an 8096-byte buffer; a longer one is
/// "string too long" (a quoted string needs room for its NUL).
const MAX_TOKEN: usize = 8096;

/// A character that begins a word when the lexer meets it between tokens
/// (`Raw::next`'s last arm): all but blanks, comments, quotes, macros,
/// punctuation tokens and NUL; the rest of a word is `word_char`s.
pub(crate) fn word_start(c: char) -> bool {
    !" \t\r\n#\"'${}(),/=!<>\0".contains(c)
}

pub(crate) fn word_char(c: char) -> bool {
    c.is_alphanumeric() || (c.is_ascii_punctuation() && !"(){}<>!=/#,\"'".contains(c))
}

/// Characters with backslash-newline removed (anywhere, as pfctl's
/// `lgetc` does), counting lines. Outside quotes `peek` and `next` read
/// as `lgetc(0)`: a backslash before any other character stands for that
/// character (`\\` is one backslash, `\#` a `#` that starts a comment,
/// `\ ` a blank), and one at the end of the input for nothing. Inside
/// quotes the quoted string reads the characters raw (`Raw::quoted`).
struct Chars {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Chars {
    fn skip_continuations(&mut self) {
        while self.chars.get(self.pos) == Some(&'\\') && self.chars.get(self.pos + 1) == Some(&'\n') {
            self.pos += 2;
            self.line += 1;
        }
    }
    /// The next character outside quotes and how many it takes.
    fn unescaped(&mut self) -> Option<(char, usize)> {
        self.skip_continuations();
        match *self.chars.get(self.pos)? {
            '\\' => self.chars.get(self.pos + 1).map(|&c| (c, 2)),
            c => Some((c, 1)),
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.unescaped().map(|(c, _)| c)
    }
    fn next(&mut self) -> Option<char> {
        let (c, n) = self.unescaped()?;
        self.pos += n;
        Some(c)
    }
}

/// Raw lexer over one text (the file, or a macro's value).
struct Raw {
    chars: Chars,
}

/// A lexing problem: (line, message).
pub type LexError = (usize, String);

impl Raw {
    fn new(src: &str, line: usize) -> Raw {
        Raw { chars: Chars { chars: src.chars().collect(), pos: 0, line } }
    }

    fn line(&self) -> usize {
        self.chars.line
    }

    /// Whether only blanks or a comment follow on this line.
    fn rest_of_line_blank(&self) -> bool {
        let rest = &self.chars.chars[self.chars.pos..];
        let mut i = 0;
        while let Some(&c) = rest.get(i) {
            i += 1;
            // lgetc(0): a continuation, or the character a backslash escapes.
            let c = match (c, rest.get(i)) {
                ('\\', Some('\n')) => {
                    i += 1;
                    continue;
                }
                ('\\', Some(&e)) => {
                    i += 1;
                    e
                }
                (c, _) => c,
            };
            match c {
                ' ' | '\t' | '\r' => continue,
                '\n' | '#' => return true,
                _ => return false,
            }
        }
        true
    }

    /// Next token; `None` at end of input. `Err` for an unterminated
    /// string (the rest of the line is skipped).
    fn next(&mut self) -> Option<Result<(Token, bool), LexError>> {
        loop {
            let c = self.chars.peek()?;
            match c {
                ' ' | '\t' | '\r' => {
                    self.chars.next();
                }
                '#' => {
                    while let Some(c) = self.chars.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.chars.next();
                    }
                }
                '\n' => {
                    self.chars.next();
                    let t = Token { tok: Tok::Newline, line: self.line() };
                    self.chars.line += 1;
                    return Some(Ok((t, false)));
                }
                '"' | '\'' => {
                    self.chars.next();
                    return Some(self.quoted(c).map(|t| (t, false)));
                }
                '$' => {
                    self.chars.next();
                    let mut name = String::new();
                    while let Some(c) = self.chars.peek() {
                        if c.is_alphanumeric() || c == '_' {
                            name.push(c);
                            self.chars.next();
                        } else {
                            break;
                        }
                    }
                    return Some(Ok((Token { tok: Tok::Word(name), line: self.line() }, true)));
                }
                _ => {
                    self.chars.next();
                    let two = |s: &mut Self, second: char, p: &'static str| -> Option<&'static str> {
                        if s.chars.peek() == Some(second) {
                            s.chars.next();
                            Some(p)
                        } else {
                            None
                        }
                    };
                    let p: Option<&'static str> = match c {
                        '{' => Some("{"),
                        '}' => Some("}"),
                        '(' => Some("("),
                        ')' => Some(")"),
                        ',' => Some(","),
                        '/' => Some("/"),
                        '=' => Some("="),
                        '!' => two(self, '=', "!=").or(Some("!")),
                        '<' => two(self, '=', "<=").or_else(|| two(self, '>', "<>")).or(Some("<")),
                        '>' => two(self, '=', ">=").or_else(|| two(self, '<', "><")).or(Some(">")),
                        _ => None,
                    };
                    if let Some(p) = p {
                        return Some(Ok((Token { tok: Tok::Punct(p), line: self.line() }, false)));
                    }
                    // yylex hands a NUL to the grammar as itself, token 0:
                    // the end of the input in the middle of a line. As in
                    // a quoted string, it is a syntax error here.
                    if c == '\0' {
                        let line = self.line();
                        self.skip_line();
                        return Some(Err((line, "syntax error".into())));
                    }
                    return Some(Ok((self.word(c.to_string()), false)));
                }
            }
        }
    }

    fn word(&mut self, mut w: String) -> Token {
        while let Some(c) = self.chars.peek() {
            if word_char(c) {
                w.push(c);
                self.chars.next();
            } else {
                break;
            }
        }
        Token { tok: Tok::Word(w), line: self.line() }
    }

    /// Skips the rest of the line and its newline, as pfctl's `findeol`.
    fn skip_line(&mut self) {
        while let Some(c) = self.chars.next() {
            if c == '\n' {
                self.chars.line += 1;
                return;
            }
        }
    }

    /// A quoted string as parse.y's `yylex` reads one (`lgetc(quotec)`
    /// reads raw characters): a newline inside is dropped (the string goes
    /// on, the line count too); a backslash before the quote, a blank or a
    /// tab stands for that character, before a newline for nothing, and
    /// before anything else is kept while that character is read again (so
    /// `\\"` is a backslash and a quote, and the string goes on). The end
    /// of the input inside it is an error.
    fn quoted(&mut self, q: char) -> Result<Token, LexError> {
        const EOF_IN_QUOTES: &str = "reached end of file while parsing quoted string";
        let line = self.line();
        let mut s = String::new();
        let cs = &mut self.chars;
        loop {
            let Some(&c) = cs.chars.get(cs.pos) else { return Err((line, EOF_IN_QUOTES.into())) };
            cs.pos += 1;
            let c = match c {
                '\n' => {
                    cs.line += 1;
                    continue;
                }
                '\\' => match cs.chars.get(cs.pos) {
                    None => return Err((line, EOF_IN_QUOTES.into())),
                    Some(&n) if n == q || n == ' ' || n == '\t' => {
                        cs.pos += 1;
                        n
                    }
                    Some('\n') => {
                        cs.pos += 1;
                        cs.line += 1;
                        continue;
                    }
                    // Kept; the next character is read again.
                    Some(_) => '\\',
                },
                c if c == q => return Ok(Token { tok: Tok::Quoted(s), line }),
                '\0' => {
                    self.skip_line();
                    return Err((line, "syntax error".into()));
                }
                c => c,
            };
            if s.len() + 2 >= MAX_TOKEN {
                self.skip_line();
                return Err((line, "string too long".into()));
            }
            s.push(c);
        }
    }
}

/// Splits a source into statements, expanding macros as it goes.
pub struct Lexer {
    raw: Raw,
}

/// One statement's tokens plus the problems met while lexing it.
pub struct Statement {
    pub tokens: Vec<Token>,
    /// Line of the newline (or end of input) that ended the statement.
    pub end_line: usize,
    pub errors: Vec<LexError>,
}

impl Lexer {
    pub fn new(src: &str) -> Lexer {
        Lexer { raw: Raw::new(src, 1) }
    }

    /// The next non-empty statement, or `None` at end of input. Macros are
    /// looked up in `macros` as they are met, so a statement may use those
    /// defined by earlier statements.
    ///
    /// Inside `{ }` a newline ends nothing: a list may span lines. The
    /// body of an inline anchor (`anchor … {` at the end of a line, as
    /// parse.y's `pfa_anchor` wants it) holds statements of its own, so
    /// there newlines are kept as `Tok::Newline` tokens between them.
    pub fn statement(&mut self, macros: &HashMap<String, String>) -> Option<Statement> {
        let mut st = Statement { tokens: vec![], end_line: self.raw.line(), errors: vec![] };
        // Open braces: true for an anchor body, false for a list.
        let mut frames: Vec<bool> = vec![];
        // Where the statement inside the innermost anchor body starts.
        let mut sub_start = 0usize;
        loop {
            let Some(next) = self.raw.next() else {
                st.end_line = self.raw.line();
                return if st.tokens.is_empty() && st.errors.is_empty() { None } else { Some(st) };
            };
            match next {
                Err(e) => {
                    // parse.y reports what follows at the line the bad
                    // token started on (`yylval.lineno`).
                    st.end_line = e.0;
                    st.errors.push(e);
                    return Some(st);
                }
                Ok((t, false)) => {
                    if t.tok == Tok::Newline {
                        match frames.last() {
                            Some(true) => {
                                if st.tokens.len() > sub_start {
                                    st.tokens.push(t);
                                }
                                sub_start = st.tokens.len();
                                continue;
                            }
                            Some(false) => continue,
                            None => {}
                        }
                        if st.tokens.is_empty() && st.errors.is_empty() {
                            continue;
                        }
                        st.end_line = t.line;
                        return Some(st);
                    }
                    if t.is_punct("{") {
                        let body = frames.last() != Some(&false)
                            && st.tokens.get(sub_start).is_some_and(|t| t.is_word("anchor"))
                            && self.raw.rest_of_line_blank();
                        frames.push(body);
                        let line = t.line;
                        st.tokens.push(t);
                        if body {
                            // A body's `{` is the one a newline follows.
                            st.tokens.push(Token { tok: Tok::Newline, line });
                            sub_start = st.tokens.len();
                        }
                        continue;
                    }
                    if t.is_punct("}") {
                        if frames.pop() == Some(true) {
                            // The anchor rule this body ends goes on to the
                            // newline, which the enclosing body keeps.
                            sub_start = st.tokens.len();
                        }
                        st.tokens.push(t);
                        continue;
                    }
                    st.tokens.push(t);
                }
                Ok((t, true)) => {
                    let name = t.word().unwrap_or_default().to_string();
                    let mut seen = vec![];
                    expand(&name, t.line, macros, &mut seen, &mut st, &mut frames);
                    // pfctl expands macros textually: `$if:network` is the
                    // macro's value followed by ":network", one word.
                    if let Some(c) = self.raw.chars.peek() {
                        if c != '$' && word_char(c) {
                            let suffix = self.raw.word(String::new());
                            match (st.tokens.last_mut(), suffix.tok) {
                                (Some(Token { tok: Tok::Word(w), .. }), Tok::Word(sfx)) => w.push_str(&sfx),
                                (_, tok) => st.tokens.push(Token { tok, line: suffix.line }),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Braces a macro's value opens or closes are lists.
fn track_depth(t: &Token, frames: &mut Vec<bool>) {
    if t.is_punct("{") {
        frames.push(false);
    } else if t.is_punct("}") {
        frames.pop();
    }
}

fn expand(
    name: &str,
    line: usize,
    macros: &HashMap<String, String>,
    seen: &mut Vec<String>,
    st: &mut Statement,
    depth: &mut Vec<bool>,
) {
    let Some(value) = macros.get(name) else {
        st.errors.push((line, format!("macro '{name}' not defined")));
        return;
    };
    if seen.iter().any(|s| s == name) {
        st.errors.push((line, format!("macro '{name}' expands recursively")));
        return;
    }
    seen.push(name.to_string());
    let mut raw = Raw::new(value, line);
    while let Some(r) = raw.next() {
        match r {
            Err((_, m)) => st.errors.push((line, m)),
            Ok((t, false)) => {
                if t.tok == Tok::Newline {
                    continue;
                }
                let t = Token { tok: t.tok, line };
                track_depth(&t, depth);
                st.tokens.push(t);
            }
            Ok((t, true)) => {
                let inner = t.word().unwrap_or_default().to_string();
                expand(&inner, line, macros, seen, st, depth);
            }
        }
    }
    seen.pop();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<String> {
        let mut lx = Lexer::new(src);
        let mut m = HashMap::new();
        m.insert("a".to_string(), "{ 1.2.3.4 $b }".to_string());
        m.insert("b".to_string(), "5.6.7.8".to_string());
        let mut out = vec![];
        while let Some(st) = lx.statement(&m) {
            out.push(st.tokens.iter().map(|t| t.describe()).collect::<Vec<_>>().join(" "));
        }
        out
    }

    #[test]
    fn splits_statements_and_punctuation() {
        assert_eq!(
            words("pass in from 10.0.0.0/8 port >=1024 # c\n\nblock\\\n all\n"),
            vec!["pass in from 10.0.0.0 / 8 port >= 1024", "block all"]
        );
    }

    #[test]
    fn macro_glued_to_a_suffix_is_one_word() {
        let mut m = HashMap::new();
        m.insert("lan".to_string(), "em0".to_string());
        let mut lx = Lexer::new("pass from $lan:network to ($lan)\n");
        let st = lx.statement(&m).unwrap();
        let w: Vec<String> = st.tokens.iter().map(|t| t.describe()).collect();
        assert_eq!(w.join(" "), "pass from em0:network to ( em0 )");
    }

    #[test]
    fn expands_nested_macros_and_multiline_lists() {
        assert_eq!(
            words("pass from $a\npass to {\n 1,\n 2 }\n"),
            vec!["pass from { 1.2.3.4 5.6.7.8 }", "pass to { 1 , 2 }"]
        );
    }

    #[test]
    fn anchor_bodies_keep_their_newlines_lists_do_not() {
        assert_eq!(
            words("anchor \"a\" on { x y } { # c\n pass to {\n 1 2 }\n\n anchor {\n block\n }\n}\npass\n"),
            vec![
                "anchor \"a\" on { x y } { end of line pass to { 1 2 } end of line anchor { end of line block end of line } end of line }",
                "pass"
            ]
        );
    }

    #[test]
    fn operators() {
        assert_eq!(words("1<>2 3><4 !=5 <t>"), vec!["1 <> 2 3 >< 4 != 5 < t >"]);
    }

    #[test]
    fn a_string_over_pfctls_buffer_is_too_long_and_the_line_is_skipped() {
        let long = "x".repeat(MAX_TOKEN);
        let src = format!("block\nblock to \"{long}\" port 1\npass\n");
        let mut lx = Lexer::new(&src);
        let m = HashMap::new();
        assert!(lx.statement(&m).unwrap().errors.is_empty());
        let st = lx.statement(&m).unwrap();
        assert_eq!(st.errors, vec![(2, "string too long".to_string())]);
        assert_eq!(st.end_line, 2);
        let st = lx.statement(&m).unwrap();
        assert_eq!(st.tokens.iter().map(|t| t.describe()).collect::<Vec<_>>(), ["pass"]);
        // 8093 characters fit
        let ok = format!("label \"{}\"\n", "y".repeat(MAX_TOKEN - 3));
        assert!(Lexer::new(&ok).statement(&m).unwrap().errors.is_empty());
    }

    /// parse.y's `lgetc(0)`: outside quotes a backslash stands for the
    /// character after it; inside quotes only before the quote (and a
    /// newline) does it go.
    #[test]
    fn a_backslash_outside_quotes_escapes_the_next_character() {
        assert_eq!(words(r"pass on e\m0 tag a\\b"), vec![r"pass on em0 tag a\b"]);
        // `\ ` is a blank, `\#` starts a comment, `\{` is punctuation,
        // `\"` opens a quoted string, in which `\x` stays.
        assert_eq!(words(r"a\ b\#c d"), vec!["a b"]);
        assert_eq!(words(r"\{ x \}"), vec!["{ x }"]);
        assert_eq!(words(r#"label \"a\b""#), vec![r#"label "a\b""#]);
        // A backslash at the end of the input is nothing; before a newline
        // it continues the line, a comment's too, unless it is escaped.
        assert_eq!(words("pass\\"), vec!["pass"]);
        assert_eq!(words("pass # c \\\nblock\n"), vec!["pass"]);
        assert_eq!(words("pass # c \\\\\nblock\n"), vec!["pass", "block"]);
        // A macro's value is read the same way when it is expanded.
        let mut m = HashMap::new();
        m.insert("m".to_string(), r"x\y\\z".to_string());
        let st = Lexer::new("pass on $m\n").statement(&m).unwrap();
        let w: Vec<String> = st.tokens.iter().map(|t| t.describe()).collect();
        assert_eq!(w.join(" "), r"pass on xy\z");
        // An anchor body's `{` is the one only blanks or a comment follow,
        // escaped or not.
        assert_eq!(words("anchor a { \\# c\n pass\n}\n"), vec!["anchor a { end of line pass end of line }"]);
    }

    /// parse.y's `yylex` inside quotes: `\"`, `\ ` and `\<tab>` are the
    /// character, a newline (escaped or not) is dropped and the string goes
    /// on, any other backslash stays and the next character is read again.
    #[test]
    fn quoted_strings_read_backslashes_and_newlines_as_pfctl() {
        let q = |src: &str| -> Result<String, LexError> {
            let mut r = Raw::new(src, 1);
            match r.next().unwrap()?.0.tok {
                Tok::Quoted(s) => Ok(s),
                t => panic!("{t:?}"),
            }
        };
        assert_eq!(q("\"a\\ b\\\tc\\\"d\"").unwrap(), "a b\tc\"d");
        assert_eq!(q(r#""a\\b""#).unwrap(), r"a\\b");
        assert_eq!(q(r#""a\x""#).unwrap(), r"a\x");
        // `\\"`: the first backslash stays, the second takes the quote.
        assert_eq!(q(r#""a\\" b""#).unwrap(), r#"a\" b"#);
        assert_eq!(q("\"{ ssh, www,\n  pop3 }\"").unwrap(), "{ ssh, www,  pop3 }");
        assert_eq!(q("\"a\\\nb\"").unwrap(), "ab");
        assert_eq!(q(r"'a\'b'").unwrap(), "a'b");
        let eof = Err((1, "reached end of file while parsing quoted string".to_string()));
        assert_eq!(q("\"abc\npass\n"), eof);
        assert_eq!(q("\"abc\\"), eof);
        assert_eq!(q("\"a\0b\"\n"), Err((1, "syntax error".to_string())));
        // Outside quotes too: a NUL never reaches a string.
        let mut lx = Lexer::new("pass on a\0b\nblock\n");
        let m = HashMap::new();
        assert_eq!(lx.statement(&m).unwrap().errors, vec![(1, "syntax error".to_string())]);
        assert_eq!(lx.statement(&m).unwrap().tokens[0].describe(), "block");
        // Lines are counted through a string that spans them.
        let mut lx = Lexer::new("label \"a\nb\" pass\nblock\n");
        let m = HashMap::new();
        assert_eq!(lx.statement(&m).unwrap().end_line, 2);
    }

    /// What `print::quoted` writes reads back as the string it was given.
    #[test]
    fn printed_strings_read_back() {
        for s in ["a", "a b", "a\"b", r"a\b", r"a\ b", r#"a\"b"#, r#"\\""#, r"a\\ b", "a\tb", "x\\\t", "'", "\u{1a}a\\"]
        {
            let p = crate::print::quoted(s);
            assert_eq!(q_or_word(&p), s, "{s:?} printed as {p:?}");
        }
        // A string ending in a backslash (from a word, `a\\`) prints as a word.
        assert_eq!(crate::print::quoted(r"a\"), r"a\\");
        assert_eq!(q_or_word(r"a\\"), r"a\");
    }

    fn q_or_word(src: &str) -> String {
        let mut r = Raw::new(src, 1);
        match r.next().unwrap().unwrap().0.tok {
            Tok::Quoted(s) | Tok::Word(s) => s,
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn unquoted_digits_are_numbers() {
        let mut lx = Lexer::new("tag 57 -1 \"57\" 10.0.0.1 1Mb\n");
        let st = lx.statement(&HashMap::new()).unwrap();
        let n: Vec<bool> = st.tokens.iter().map(|t| t.is_number()).collect();
        assert_eq!(n, [false, true, true, false, false, false]);
    }
}
