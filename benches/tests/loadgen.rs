//! CI: `rvs-loadgen --short`, the real rvsd end to end over net_memif in every forwarding mode
//! (and the bare reflector): flows opened and every frame checked for the mode's rewrite, in
//! lockstep. Correctness only: no figure is judged. Needs root (DPDK, memif) and the rvsd binary
//! next to rvs-loadgen (`cargo build --workspace --bins`, as deploy/test.sh does); fails without
//! them unless RVS_SKIP_LAB=1 skips it (reported SKIPPED). Holds the lab lock while it runs (it
//! busy-polls CPU 1, as a lab's rvsd would).

#[path = "../../tests/common/prereq.rs"]
mod prereq;

use std::path::Path;
use std::process::Command;

#[test]
fn short_run_of_rvsd_over_memif_is_correct_in_every_mode() {
    if !prereq::check("rvs-loadgen --short", &[]) {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_rvs-loadgen"));
    let rvsd = bin.with_file_name("rvsd");
    assert!(
        rvsd.exists(),
        "rvsd not found at {}: build every binary first (`cargo build --workspace --bins`; deploy/test.sh does)",
        rvsd.display()
    );
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/rvs-lab.lock")
        .expect("open /tmp/rvs-lab.lock");
    lock.lock().expect("lock /tmp/rvs-lab.lock");
    let out = Command::new(bin).args(["--short", "--dir", "/tmp/rvs-loadgen-ci"]).output().expect("rvs-loadgen runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rvs-loadgen --short failed:\n{stdout}\n{stderr}");
    // The reflector + 4 modes x (TCP, UDP, TCP new).
    assert!(stdout.contains("rvs-loadgen: 13 case(s), 0 failed"), "unexpected summary:\n{stdout}\n{stderr}");
    for mode in ["DR", "NAT", "FULLNAT", "TUN"] {
        for wl in ["TCP 64", "UDP 64", "TCP new"] {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("{mode} {wl} ")))
                .unwrap_or_else(|| panic!("no result line for {mode} {wl}:\n{stdout}"));
            assert!(line.ends_with(" OK") && line.contains("lockstep 32/32 back"), "{mode} {wl}: {line}");
        }
    }
}
