//! CI: the benchmark's `--short` mode for every forwarding mode and workload, with few sessions,
//! plus the control-plane benchmark with few services. Asserts correctness only (every packet
//! accounted for, no drops, output frames right): timing on a shared CI machine proves nothing.

use std::process::Command;

#[test]
fn short_run_of_every_mode_and_workload_is_correct() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvs-bench"))
        .args([
            "--short",
            "--mode",
            "all",
            "--workload",
            "all",
            "--sessions",
            "512",
            "--control",
            "--services",
            "300",
            "--huge",
            "off",
        ])
        .output()
        .expect("rvs-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rvs-bench --short failed:\n{stdout}\n{stderr}");
    // 4 modes x 4 workloads + the control plane.
    assert!(stdout.contains("rvs-bench: 17 case(s), 0 failed correctness"), "unexpected summary:\n{stdout}\n{stderr}");
    for mode in ["DR", "NAT", "FULLNAT", "TUN"] {
        for wl in ["established", "new", "mix", "churn"] {
            let line = stdout
                .lines()
                .find(|l| l.split_whitespace().take(2).eq([mode, wl]))
                .unwrap_or_else(|| panic!("no result line for {mode} {wl}:\n{stdout}"));
            assert!(line.ends_with(" OK") && line.contains("drops 0"), "{mode} {wl}: {line}");
        }
    }
}
