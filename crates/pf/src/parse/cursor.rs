//! The token cursor the parser reads with, and number words.

use super::*;

pub(super) struct Cursor<'t> {
    pub(super) toks: &'t [Token],
    pub(super) pos: usize,
    pub(super) end_line: usize,
}

impl<'t> Cursor<'t> {
    pub(super) fn peek(&self) -> Option<&'t Token> {
        self.toks.get(self.pos)
    }
    pub(super) fn peek_at(&self, n: usize) -> Option<&'t Token> {
        self.toks.get(self.pos + n)
    }
    pub(super) fn next(&mut self) -> Option<&'t Token> {
        let t = self.toks.get(self.pos);
        if t.is_some() {
            self.pos += 1;
        }
        t
    }
    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.toks.len()
    }
    pub(super) fn line(&self) -> usize {
        self.peek().map(|t| t.line).unwrap_or(self.end_line)
    }
    pub(super) fn peek_word(&self) -> Option<&'t str> {
        self.peek().and_then(|t| t.word())
    }
    pub(super) fn eat_word(&mut self, w: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_word(w)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn eat_punct(&mut self, p: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(p)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn syntax<T>(&self) -> PResult<T> {
        Err((self.line(), "syntax error".into()))
    }
    pub(super) fn expect_punct(&mut self, p: &str) -> PResult<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.syntax()
        }
    }
    pub(super) fn expect_word(&mut self, w: &str) -> PResult<()> {
        if self.eat_word(w) {
            Ok(())
        } else {
            self.syntax()
        }
    }
    /// A word or a quoted string.
    pub(super) fn string(&mut self) -> PResult<String> {
        match self.peek().and_then(|t| t.string()) {
            Some(s) => {
                self.pos += 1;
                Ok(s.to_string())
            }
            None => self.syntax(),
        }
    }
    /// An interface or group name (`on NAME`, `set skip on NAME`,
    /// `antispoof for NAME`): as parse.y's `if_item`, shorter than
    /// IFNAMSIZ ("interface name too long"); and, since pfctl prints it
    /// bare, one that reads back as the same single word (and, as an
    /// OpenBSD or Linux interface name, without a ':' or a backslash).
    pub(super) fn ifname(&mut self) -> PResult<String> {
        let line = self.line();
        let name = self.string()?;
        if name.len() >= crate::chksum::IFNAMSIZ {
            return Err((line, "interface name too long".into()));
        }
        // ':' is dynaddr's modifier separator (`(em0:network)`): a name
        // holding one would print as an address with a bad modifier.
        // A backslash (`\\` outside quotes) would print as one and read
        // back as an escape of the character after it.
        // A '$' first would print as a macro (`"$s"` read from quotes).
        if name.is_empty()
            || name.starts_with('$')
            || name.contains([':', '\\'])
            || !name.chars().all(crate::lexer::word_char)
        {
            return Err((line, format!("invalid interface name '{name}'")));
        }
        Ok(name)
    }
    /// A table's name between `<` and `>`. It prints bare where it reads
    /// back as one word, else in double quotes (`print::table_name`), so
    /// one that neither can carry (a backslash at its end after a blank or
    /// punctuation) is refused.
    pub(super) fn table_name(&mut self) -> PResult<String> {
        let line = self.line();
        let name = self.string()?;
        if name.ends_with('\\') && !name.chars().all(crate::lexer::word_char) {
            return Err((line, format!("invalid table name '{name}'")));
        }
        Ok(name)
    }
    pub(super) fn word(&mut self) -> PResult<String> {
        match self.peek_word() {
            Some(s) => {
                self.pos += 1;
                Ok(s.to_string())
            }
            None => self.syntax(),
        }
    }
    pub(super) fn number(&mut self) -> PResult<u64> {
        let line = self.line();
        let w = self.word()?;
        parse_number(&w).ok_or((line, "syntax error".into()))
    }
    pub(super) fn u32(&mut self, what: &str) -> PResult<u32> {
        let line = self.line();
        let n = self.number()?;
        u32::try_from(n).map_err(|_| (line, format!("{what} out of range")))
    }
    /// Parses `{ item [,] item … }` or a single item.
    pub(super) fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        if self.eat_punct("{") {
            let mut out = vec![];
            loop {
                if self.eat_punct("}") {
                    break;
                }
                if self.at_end() {
                    return self.syntax();
                }
                out.push(item(self)?);
                self.eat_punct(",");
            }
            if out.is_empty() {
                return self.syntax();
            }
            Ok(out)
        } else {
            Ok(vec![item(self)?])
        }
    }
}

pub(super) fn parse_number(w: &str) -> Option<u64> {
    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    w.parse().ok()
}

pub(super) fn parse_number_or_hex(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        parse_number(w)
    }
}

pub(super) const RESERVED: &[&str] = &[
    "pass",
    "block",
    "match",
    "set",
    "table",
    "antispoof",
    "in",
    "out",
    "on",
    "from",
    "to",
    "all",
    "any",
    "proto",
    "inet",
    "inet6",
    "quick",
    "log",
    "port",
    "flags",
    "label",
    "tag",
    "tagged",
    "keep",
    "modulate",
    "synproxy",
    "state",
    "no",
    "self",
    "rtable",
    "tos",
    "return",
    "drop",
    "anchor",
    "include",
];
