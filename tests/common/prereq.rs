//! Whether a test that needs the machine (root, network namespaces, tools on PATH) runs, fails
//! or is skipped. The rule: a test that cannot run FAILS, naming what is missing, unless
//! `RVS_SKIP_LAB=1` asks to skip; a skipped test writes `SKIPPED: <test>: <reason>` straight to
//! stderr (past libtest's output capture), which `deploy/test.sh` collects into a summary.
//!
//! Used by the lab harness (`tests/common/mod.rs`) and, through `#[path]`, by the
//! rvs-ipip-decap selftest; no dependencies. The rule itself is the pure [`verdict`]
//! (unit-tested in `tests/prereq_rule.rs`).

use std::io::Write;
use std::process::{Command, Stdio};

/// `RVS_SKIP_LAB=1`: skip every test that needs root and network namespaces, reporting each
/// as SKIPPED. Unset (or `0`, or empty): such tests run, and fail when they cannot.
pub const SKIP_VAR: &str = "RVS_SKIP_LAB";

/// Prefix of the line a skipped test writes to stderr.
pub const SKIPPED: &str = "SKIPPED: ";

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Run,
    /// The reason, for the `SKIPPED:` line.
    Skip(String),
    /// The panic message.
    Fail(String),
}

/// The rule. `missing`: what the machine lacks for `test` (empty: nothing); `skip_var`: the
/// value of [`SKIP_VAR`], if set.
pub fn verdict(test: &str, missing: &[String], skip_var: Option<&str>) -> Verdict {
    let skip = match skip_var.map(str::trim) {
        None | Some("") | Some("0") => false,
        Some("1") => true,
        Some(v) => {
            return Verdict::Fail(format!(
                "{test}: {SKIP_VAR}={v:?} is not understood: set it to 1 to skip, or unset it"
            ))
        }
    };
    match (skip, missing.is_empty()) {
        (false, true) => Verdict::Run,
        (false, false) => Verdict::Fail(format!(
            "{test} cannot run, missing: {}. It needs root, `ip netns` and the lab tools \
             (deploy/install-deps.sh); run it as root (sudo bash deploy/test.sh), or set {SKIP_VAR}=1 \
             to skip such tests (reported as SKIPPED, not as passed)",
            missing.join(", ")
        )),
        (true, true) => Verdict::Skip(format!("{SKIP_VAR}=1")),
        (true, false) => Verdict::Skip(format!("{SKIP_VAR}=1 (and missing: {})", missing.join(", "))),
    }
}

/// What this machine lacks to run a network-namespace test that also uses `tools`.
pub fn missing(tools: &[&str]) -> Vec<String> {
    let mut m = Vec::new();
    let uid = Command::new("id").arg("-u").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match uid.as_deref() {
        Some("0") => {}
        Some(u) if !u.is_empty() => m.push(format!("root (running as uid {u})")),
        _ => m.push("root (`id -u` failed)".to_string()),
    }
    let netns = Command::new("ip")
        .args(["netns", "list"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !netns {
        m.push("`ip netns` (iproute2)".to_string());
    }
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            m.push(format!("`{t}` on PATH"));
        }
    }
    m
}

/// `<test binary>::<test>` for messages: libtest names each test's thread after the test.
pub fn test_name(fallback: &str) -> String {
    let bin = std::env::args()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|f| f.to_string_lossy().into_owned()))
        .map(|f| match f.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => f,
        })
        .unwrap_or_default();
    let t = std::thread::current().name().filter(|n| *n != "main").unwrap_or(fallback).to_string();
    if bin.is_empty() {
        t
    } else {
        format!("{bin}::{t}")
    }
}

/// Applies the rule to the current test: true means run it; false means it was skipped (the
/// `SKIPPED:` line is written); panics (the test fails) when it cannot run and no skip was asked.
/// `what` goes into the messages (e.g. the lab prefix), `tools` are needed on PATH.
pub fn check(what: &str, tools: &[&str]) -> bool {
    let test = format!("{} ({what})", test_name(what));
    let skip_var = std::env::var(SKIP_VAR).ok();
    match verdict(&test, &missing(tools), skip_var.as_deref()) {
        Verdict::Run => true,
        Verdict::Skip(reason) => {
            // Straight to fd 2: eprintln! would be captured by libtest and dropped on success.
            let _ = writeln!(std::io::stderr(), "\n{SKIPPED}{test}: {reason}");
            false
        }
        Verdict::Fail(msg) => panic!("{msg}"),
    }
}
