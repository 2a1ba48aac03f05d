//! OpenBSD's pfctl regress suite (regress/sbin/pfctl) against `softnet
//! pfctl`, as a test of the project.
//!
//! The cases live in tests/pf-regress/cases (see the README there). Every
//! case runs the way the regress Makefile runs it, from the cases
//! directory with the input on stdin:
//!
//! | family   | command                                     | passes when |
//! |----------|---------------------------------------------|-------------|
//! | pf       | `-o none -nv -f - < pfN.in`                 | stdout == pfN.ok |
//! | selfpf   | `-o none -nv -f - < pfN.ok`                 | stdout == pfN.ok |
//! | pfail    | `-o none -nv -f - < pfailN.in 2>&1`         | output == pfailN.ok, refused (accepted if pfailN.ok reports no error) |
//! | pfsimple | `-o none -nf - < pfsimpleN.in`              | exit 0 |
//! | pfopt    | `-o none -nv -f - $(cat pfoptN.opts) < pfoptN.in` | stdout == pfoptN.ok |
//!
//! `tests/pf-regress/passing` lists the cases that must pass (one name a
//! line); a listed case that fails fails this test. A case that passes but
//! is not listed is reported, so it can be added.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn regress_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/pf-regress")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Pf,
    SelfPf,
    Pfail,
    Pfsimple,
    Pfopt,
}

struct Case {
    name: String,
    family: Family,
    /// The file name stem in cases/ (`pf12` for both pf12 and selfpf12).
    stem: String,
}

/// Every runnable case, as run.sh finds them: an `.in` and (except for
/// pfsimple) an `.ok`.
fn cases(dir: &Path) -> Vec<Case> {
    let mut stems: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".in").map(str::to_string))
        .filter(|s| !s.contains('.'))
        .collect();
    stems.sort_by_key(|s| {
        let digits = s.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        (s[..s.len() - digits.len()].to_string(), digits.parse::<u32>().unwrap_or(0))
    });
    let has_ok = |s: &str| dir.join(format!("{s}.ok")).exists();
    let mut out = vec![];
    for (prefix, fam) in [("pfail", Family::Pfail), ("pfsimple", Family::Pfsimple), ("pfopt", Family::Pfopt)] {
        for s in stems.iter().filter(|s| is_family(s, prefix)) {
            if fam == Family::Pfsimple || has_ok(s) {
                out.push(Case { name: s.clone(), family: fam, stem: s.clone() });
            }
        }
    }
    for s in stems.iter().filter(|s| is_family(s, "pf")).filter(|s| has_ok(s)) {
        out.push(Case { name: s.clone(), family: Family::Pf, stem: s.clone() });
        out.push(Case { name: format!("self{s}"), family: Family::SelfPf, stem: s.clone() });
    }
    out
}

fn is_family(stem: &str, prefix: &str) -> bool {
    stem.strip_prefix(prefix).is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Runs one case; `Err` says why it failed.
fn run_case(bin: &Path, dir: &Path, c: &Case) -> Result<(), String> {
    let config = regress_dir().join("interfaces.toml");
    let mut args: Vec<String> =
        vec!["pfctl".into(), "-c".into(), config.display().to_string(), "-o".into(), "none".into()];
    args.extend(
        if c.family == Family::Pfsimple { vec!["-nf", "-"] } else { vec!["-nv", "-f", "-"] }
            .into_iter()
            .map(String::from),
    );
    if c.family == Family::Pfopt {
        let opts = fs::read_to_string(dir.join(format!("{}.opts", c.stem))).unwrap_or_default();
        args.extend(opts.split_whitespace().map(String::from));
    }
    let input = match c.family {
        Family::SelfPf => dir.join(format!("{}.ok", c.stem)),
        _ => dir.join(format!("{}.in", c.stem)),
    };
    // pfail joins stderr to stdout (2>&1): both go to one file, in the
    // order the program writes them.
    let joined = (c.family == Family::Pfail).then(|| {
        let p = std::env::temp_dir().join(format!("sn-pf-regress-{}-{}", std::process::id(), c.name));
        (fs::File::create(&p).unwrap(), p)
    });
    let mut cmd = Command::new(bin);
    cmd.args(&args).current_dir(dir).env_remove("SOFTNET_SOCKET").stdin(Stdio::piped());
    match &joined {
        Some((f, _)) => cmd.stdout(f.try_clone().unwrap()).stderr(f.try_clone().unwrap()),
        None => cmd.stdout(Stdio::piped()).stderr(Stdio::piped()),
    };
    let mut child = cmd.spawn().map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let text = fs::read(&input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&text);
    });
    let mut out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    if let Some((_, p)) = &joined {
        out.stdout = fs::read(p).unwrap();
        let _ = fs::remove_file(p);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ok = || fs::read_to_string(dir.join(format!("{}.ok", c.stem))).unwrap();
    let diff = |want: &str, got: &str| -> String {
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let first = (0..w.len().max(g.len())).find(|&i| w.get(i) != g.get(i)).unwrap_or(0);
        format!(
            "exit {:?}; first difference at line {}:\n  want: {}\n  got:  {}",
            out.status.code(),
            first + 1,
            w.get(first).unwrap_or(&"<end>"),
            g.get(first).unwrap_or(&"<end>")
        )
    };
    match c.family {
        Family::Pf | Family::SelfPf | Family::Pfopt => {
            let want = ok();
            if stdout == want {
                Ok(())
            } else {
                Err(format!("{}\n  stderr: {}", diff(&want, &stdout), stderr.lines().next().unwrap_or("")))
            }
        }
        Family::Pfail => {
            let want = ok();
            // The Makefile compares the output only. A case whose expected
            // output reports no error (pfail14: current pfctl accepts the
            // rule and prints it) must be accepted; the others refused.
            let reports_error = want.lines().any(|l| l.starts_with("stdin:") || l.starts_with("pfctl:"));
            if !reports_error {
                return if out.status.success() && stdout == want { Ok(()) } else { Err(diff(&want, &stdout)) };
            }
            if out.status.success() {
                Err(format!("exit 0, the ruleset was accepted\n{}", diff(&want, &stdout)))
            } else if stdout == want {
                Ok(())
            } else {
                Err(diff(&want, &stdout))
            }
        }
        Family::Pfsimple => {
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("exit {:?}: {}", out.status.code(), stderr.lines().next().unwrap_or("")))
            }
        }
    }
}

/// Names in a list file: one a line, `#` starts a comment.
fn read_list(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn openbsd_pfctl_regress_cases() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_softnet"));
    let dir = regress_dir().join("cases");
    let all = cases(&dir);
    assert!(all.len() > 200, "{} cases found in {}", all.len(), dir.display());
    let passing: BTreeSet<String> = read_list(&regress_dir().join("passing")).into_iter().collect();
    let known: BTreeSet<&str> = all.iter().map(|c| c.name.as_str()).collect();
    let unknown: Vec<&String> = passing.iter().filter(|n| !known.contains(n.as_str())).collect();
    assert!(unknown.is_empty(), "tests/pf-regress/passing names cases that do not exist: {unknown:?}");

    // The cases are independent processes: run them on a few threads.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(8);
    let results: Vec<(usize, Result<(), String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (all, bin, dir) = (&all, &bin, &dir);
                s.spawn(move || {
                    (t..all.len()).step_by(threads).map(|i| (i, run_case(bin, dir, &all[i]))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });

    let mut regressions = vec![];
    let mut unlisted = vec![];
    let mut per_family: Vec<(Family, usize, usize)> = vec![];
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);
    for (i, r) in &results {
        let c = &all[*i];
        match per_family.iter_mut().find(|(f, _, _)| *f == c.family) {
            Some(e) => {
                if r.is_ok() {
                    e.1 += 1
                } else {
                    e.2 += 1
                }
            }
            None => per_family.push((c.family, r.is_ok() as usize, r.is_err() as usize)),
        }
        match (r, passing.contains(&c.name)) {
            (Err(why), true) => regressions.push(format!("{}: {why}", c.name)),
            (Ok(()), false) => unlisted.push(c.name.clone()),
            _ => {}
        }
    }
    for (f, p, n) in &per_family {
        eprintln!("{f:?}: {p} passed, {n} failed");
    }
    if !unlisted.is_empty() {
        eprintln!("these cases pass but are not in tests/pf-regress/passing (add them):\n  {}", unlisted.join("\n  "));
    }
    assert!(
        regressions.is_empty(),
        "{} listed case(s) of tests/pf-regress/passing failed:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}
