//! Translation and routing targets (parse.y's `redirspec`, `pool_opts`).

use super::*;

impl Parser<'_> {
    pub(super) fn redir_spec(c: &mut Cursor) -> PResult<RedirSpec> {
        let mut targets = vec![];
        let target = |c: &mut Cursor| -> PResult<String> {
            if c.eat_punct("(") {
                let s = c.string()?;
                c.expect_punct(")")?;
                Ok(format!("({s})"))
            } else if c.eat_punct("<") {
                let s = c.string()?;
                c.expect_punct(">")?;
                Ok(format!("<{s}>"))
            } else {
                let s = c.string()?;
                if c.eat_punct("/") {
                    Ok(format!("{s}/{}", c.number()?))
                } else {
                    Ok(s)
                }
            }
        };
        targets.extend(c.list(target)?);
        let port = if c.eat_word("port") { Some(c.string()?) } else { None };
        let mut pool_opts = vec![];
        while let Some(w) = c.peek_word() {
            match w {
                "bitmask" | "random" | "round-robin" | "least-states" | "sticky-address" | "static-port" => {
                    pool_opts.push(w.to_string());
                    c.next();
                }
                "source-hash" => {
                    c.next();
                    match c.peek_word() {
                        Some(k) if k.starts_with("0x") => {
                            pool_opts.push(format!("source-hash {k}"));
                            c.next();
                        }
                        _ => pool_opts.push("source-hash".into()),
                    }
                }
                _ => break,
            }
        }
        Ok(RedirSpec { targets, port, pool_opts })
    }
}
