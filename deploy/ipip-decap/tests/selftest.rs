//! Runs selftest.sh (two network namespaces, real IPIP traffic through rvs-ipip-decap) against
//! the binary cargo just built. Needs root; skipped with a loud message otherwise.

use std::process::Command;

fn is_root() -> bool {
    // `id -u` rather than libc::geteuid: this crate has no libc dependency.
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

#[test]
fn ipip_decap_in_network_namespaces() {
    if !is_root() {
        eprintln!();
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!!! SKIPPED rvs-ipip-decap selftest: needs root (network namespaces) !!!");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
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
