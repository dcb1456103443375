//! Build script: bindgen over the system DPDK 22.11 headers, C wrappers of the
//! static-inline hot-path functions (`wrap_static_fns`) and the small C shim
//! (`csrc/shim.c`), compiled with the same pkg-config cflags as the bindings.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Function families rvs needs. Static-inline ones among them get a C wrapper.
const FUNCTIONS: &[&str] = &[
    "rte_eal_.*",
    "rte_eth_.*",
    "rte_pktmbuf_.*",
    "rte_mbuf_.*",
    "rte_mempool_.*",
    "rte_ring_.*",
    "rte_lcore_.*",
    "rte_thread_register",
    "rte_thread_unregister",
    "rte_socket_id",
    "rte_rdtsc",
    "rte_get_tsc_hz",
    "rte_strerror",
    "rvs_.*",
];

/// Constants (enums and `#define`s bindgen can evaluate) used by the safe layer.
const VARS: &[&str] = &[
    "RTE_ETH_.*",
    "RTE_MBUF_.*",
    "RTE_PKTMBUF_.*",
    "RTE_RING_.*",
    "RING_F_.*",
    "RTE_MEMPOOL_.*",
    "RTE_MAX_ETHPORTS",
    "RTE_MAX_LCORE",
    "RTE_ETHDEV_QUEUE_STAT_CNTRS",
    "RTE_ETH_NAME_MAX_LEN",
    "RTE_MEMZONE_NAMESIZE",
    "RTE_RING_NAMESIZE",
    "SOCKET_ID_ANY",
    "LCORE_ID_ANY",
];

/// Packed (and packed + aligned) structs that bindgen cannot lay out
/// faithfully; rvs never touches their fields from Rust.
const OPAQUE: &[&str] = &[
    "rte_arp_hdr",
    "rte_arp_ipv4",
    "rte_ether_hdr",
    "rte_vlan_hdr",
    "rte_ipv4_hdr",
    "rte_ipv6_hdr",
    "rte_tcp_hdr",
    "rte_udp_hdr",
    "rte_eth_dcb_info",
];

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(args)
        .arg("libdpdk")
        .output()
        .expect("running pkg-config (is pkg-config installed?)");
    assert!(
        out.status.success(),
        "pkg-config {args:?} libdpdk failed (is libdpdk-dev installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pkg-config output is UTF-8").split_whitespace().map(str::to_owned).collect()
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let csrc = manifest.join("csrc");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");

    let version = pkg_config(&["--modversion"]).join("");
    assert!(version.starts_with("22.11"), "dpdk-sys is written against DPDK 22.11, pkg-config reports {version}");

    // `-I...`, `-include rte_config.h`, `-march=...` exactly as DPDK wants them.
    let mut cflags = pkg_config(&["--cflags"]);
    cflags.push("-DALLOW_EXPERIMENTAL_API".into());
    cflags.push(format!("-I{}", csrc.display()));

    // ---- bindgen -----------------------------------------------------------
    let static_fns = out_dir.join("static_fns");
    let mut builder = bindgen::Builder::default()
        .header(csrc.join("wrapper.h").to_str().unwrap())
        .clang_args(&cflags)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate_comments(false)
        .layout_tests(true)
        .derive_default(true)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .allowlist_recursively(true)
        // Thread-local per-lcore variables must never be read as statics.
        .blocklist_item("per_lcore_.*")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&static_fns)
        .wrap_static_fns_suffix("__rvs_extern");
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    for o in OPAQUE {
        builder = builder.opaque_type(o);
    }
    let bindings = builder.generate().expect("bindgen over DPDK headers");
    bindings.write_to_file(out_dir.join("bindings.rs")).expect("writing bindings.rs");

    // ---- C: static-inline wrappers + shim ------------------------------------
    let mut build = cc::Build::new();
    build
        .file(static_fns.with_extension("c"))
        .file(csrc.join("shim.c"))
        .include(&manifest)
        .warnings(false)
        .opt_level(3);
    // Pass the pkg-config cflags through verbatim (`-include rte_config.h` is
    // two arguments and must stay in order).
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("rvs_dpdk_shim");

    // ---- link ----------------------------------------------------------------
    for l in pkg_config(&["--libs-only-L"]) {
        if let Some(dir) = l.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
    }
    // Only the libraries rvs calls. PMDs (net_af_packet, net_ring, net_null,
    // net_tap, ...) are plugins EAL dlopen()s from its driver directory.
    for lib in ["rte_ethdev", "rte_mbuf", "rte_mempool", "rte_ring", "rte_eal"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
}
