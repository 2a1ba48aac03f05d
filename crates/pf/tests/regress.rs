//! pfctl-style regression cases.
//!
//! `tests/cases/NNN.in` is parsed and printed like `pfctl -o none -nv`
//! (a first line `# pfctl: -o basic -vv` changes the flags); the output must
//! equal `NNN.ok`, and parsing `NNN.ok` again must print the same text
//! (round trip). `tests/fail/NNN.in` must be rejected with exactly the
//! messages in `NNN.err`. The resolver is `StaticResolver::example()`.
//!
//! `PF_BLESS=1 cargo test` rewrites the expected files; review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use softnet_pf::model::OptLevel;
use softnet_pf::{error::format_errors, load_ruleset, parse_ruleset, print_ruleset, PrintOpts, StaticResolver};

fn inputs(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(dir);
    let mut v: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "in"))
        .collect();
    v.sort();
    v
}

fn opts_for(src: &str) -> (PrintOpts, bool) {
    let mut o = PrintOpts { verbose: 1, opt_level: Some(OptLevel::None) };
    let mut load = false;
    if let Some(flags) = src.lines().next().and_then(|l| l.strip_prefix("# pfctl:")) {
        let mut it = flags.split_whitespace();
        while let Some(f) = it.next() {
            match f {
                "-o" => {
                    o.opt_level = match it.next() {
                        Some("none") => Some(OptLevel::None),
                        Some("basic") => Some(OptLevel::Basic),
                        Some("profile") => Some(OptLevel::Profile),
                        _ => None,
                    }
                }
                "-vv" => o.verbose = 2,
                "-q" => o.verbose = 0,
                "load" => load = true,
                other => panic!("unknown flag {other}"),
            }
        }
    }
    (o, load)
}

fn check(path: &Path, got: &str, ext: &str, failures: &mut Vec<String>) {
    let exp_path = path.with_extension(ext);
    if std::env::var_os("PF_BLESS").is_some() {
        fs::write(&exp_path, got).unwrap();
        return;
    }
    let want = fs::read_to_string(&exp_path).unwrap_or_default();
    if want != got {
        failures.push(format!("{}:\n--- want\n{want}--- got\n{got}", path.display()));
    }
}

#[test]
fn cases() {
    let r = StaticResolver::example();
    let mut failures = vec![];
    let files = inputs("cases");
    assert!(files.len() >= 60, "{} cases", files.len());
    for path in &files {
        let src = fs::read_to_string(path).unwrap();
        let (opts, _) = opts_for(&src);
        let got = match parse_ruleset(&src, "pf.conf", &r) {
            Ok(rs) => print_ruleset(&rs, &opts),
            Err(e) => format!("ERROR\n{}", format_errors(&e)),
        };
        check(path, &got, "ok", &mut failures);
        // round trip: the printed form parses and prints the same
        if opts.verbose < 2 && !got.starts_with("ERROR") {
            match parse_ruleset(&got, "pf.conf", &r) {
                Ok(rs) => {
                    let again = print_ruleset(&rs, &opts);
                    if again != got {
                        failures.push(format!("{}: round trip\n--- first\n{got}--- second\n{again}", path.display()));
                    }
                }
                Err(e) => {
                    failures.push(format!("{}: printed form does not parse:\n{}", path.display(), format_errors(&e)))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn failures() {
    let r = StaticResolver::example();
    let mut failures = vec![];
    let files = inputs("fail");
    assert!(files.len() >= 30, "{} fail cases", files.len());
    for path in &files {
        let src = fs::read_to_string(path).unwrap();
        let (_, load) = opts_for(&src);
        let res = if load { load_ruleset(&src, "pf.conf", &r) } else { parse_ruleset(&src, "pf.conf", &r) };
        let got = match res {
            Ok(_) => "ACCEPTED\n".to_string(),
            Err(e) => format_errors(&e),
        };
        check(path, &got, "err", &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
