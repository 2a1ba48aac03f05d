//! pf.conf as pfctl reads it: any text either parses or gets errors (never
//! a panic); a ruleset that parses prints (`pfctl -nvf`, with and without
//! the optimizer) to text that parses back and prints the same, and loads
//! into pf (compiled, skip steps) or is refused with an error. Included
//! files never reach the file system here: every `include`, `load anchor`
//! and table `file` reads as missing.

use softnet_pf::model::OptLevel;
use softnet_pf::parse::{parse_ruleset_in, FileSource};
use softnet_pf::{check_supported, print_ruleset, Pf, PrintOpts, StaticResolver};

/// Files as a sandbox has them: none.
pub struct NoFiles;

impl FileSource for NoFiles {
    fn read(&self, _path: &str) -> Result<String, String> {
        Err("No such file or directory".into())
    }
}

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let r = StaticResolver::example();
    let Ok(rs) = parse_ruleset_in(text, "pf.conf", "", &r, &NoFiles) else { return };
    for level in [OptLevel::None, OptLevel::Basic] {
        let opts = PrintOpts { verbose: 1, opt_level: Some(level) };
        let first = print_ruleset(&rs, &opts);
        let again = match parse_ruleset_in(&first, "pf.conf", "", &r, &NoFiles) {
            Ok(a) => a,
            Err(e) => panic!("source:\n{text}\nprinted:\n{first}\ndoes not parse back: {e:?}"),
        };
        let second = print_ruleset(&again, &opts);
        assert_eq!(first, second, "source:\n{text}\nprinted twice differently");
    }
    if check_supported(&rs).is_ok() {
        let pf = Pf::new();
        let _ = pf.load(&rs, &r);
    }
}
