//! The daemon's TOML configuration: any text is a configuration or an
//! error that names a line of the file (never a panic).

use softnet::config::Config;
use std::path::Path;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Config::parse(text, Path::new("softnet.toml")) {
        let lines = text.lines().count().max(1);
        assert!(e.line <= lines, "error on line {} of a {lines}-line file: {e}", e.line);
        assert!(!e.to_string().is_empty());
    }
}
