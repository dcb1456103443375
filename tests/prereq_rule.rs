//! The skip/fail rule for tests that need the machine (tests/common/prereq.rs): a test that
//! cannot run fails unless RVS_SKIP_LAB=1 asks to skip it. Runs anywhere, as any user.

#[path = "common/prereq.rs"]
#[allow(dead_code)]
mod prereq;

use prereq::{verdict, Verdict, SKIP_VAR};

fn missing(m: &[&str]) -> Vec<String> {
    m.iter().map(|s| s.to_string()).collect()
}

#[test]
fn runs_when_nothing_is_missing_and_no_skip_is_asked() {
    for var in [None, Some(""), Some("0"), Some(" 0 ")] {
        assert_eq!(verdict("lab t1", &[], var), Verdict::Run, "{var:?}");
    }
}

#[test]
fn fails_naming_what_is_missing_without_the_skip_variable() {
    for var in [None, Some(""), Some("0")] {
        match verdict("lab t1", &missing(&["root (running as uid 1000)", "`ip netns` (iproute2)"]), var) {
            Verdict::Fail(msg) => {
                assert!(msg.starts_with("lab t1 cannot run"), "{msg}");
                assert!(msg.contains("root (running as uid 1000)") && msg.contains("`ip netns`"), "{msg}");
                assert!(msg.contains(&format!("{SKIP_VAR}=1")), "the message tells how to skip: {msg}");
            }
            v => panic!("{var:?}: {v:?}"),
        }
    }
}

#[test]
fn skips_with_the_variable_set_and_says_why() {
    assert_eq!(verdict("lab t1", &[], Some("1")), Verdict::Skip(format!("{SKIP_VAR}=1")));
    match verdict("lab t1", &missing(&["`wrk` on PATH"]), Some("1")) {
        Verdict::Skip(why) => assert!(why.contains(SKIP_VAR) && why.contains("`wrk` on PATH"), "{why}"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn an_unknown_value_of_the_variable_fails_rather_than_guessing() {
    for v in ["yes", "true", "2"] {
        for m in [missing(&[]), missing(&["root"])] {
            match verdict("lab t1", &m, Some(v)) {
                Verdict::Fail(msg) => assert!(msg.contains(SKIP_VAR) && msg.contains(v), "{msg}"),
                other => panic!("{v}: {other:?}"),
            }
        }
    }
}
