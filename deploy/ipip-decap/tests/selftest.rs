//! Runs selftest.sh (two network namespaces, real IPIP traffic through rvs-ipip-decap) against
//! the binary cargo just built. Needs root and `ip netns`: without them it fails, naming what is
//! missing, unless RVS_SKIP_LAB=1 skips it (a `SKIPPED:` line on stderr, like the lab tests).

use std::process::Command;

// The workspace's one skip/fail rule for tests that need the machine (no dependencies).
#[path = "../../../tests/common/prereq.rs"]
#[allow(dead_code)]
mod prereq;

#[test]
fn ipip_decap_in_network_namespaces() {
    if !prereq::check("rvs-ipip-decap selftest", &[]) {
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/selftest.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_rvs-ipip-decap"))
        .output()
        .expect("cannot run selftest.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    println!("{stdout}");
    assert!(out.status.success(), "selftest.sh failed ({}):\n{stderr}{stdout}", out.status);
    assert!(stdout.contains("selftest: PASS"));
}
