//! A whole run as the command line asks for it: EAL set up once, the cases (and, with `--all`,
//! established at 10M sessions where the measured memory says it fits), the control-plane
//! benchmark, then the summary line, the JSON and the markdown.

use crate::cases::{
    estimate_gib, mode_name, run_case, CaseResult, Timing, Workload, FULL_SIZES, HUGE_SESSIONS, SHORT_SECONDS,
};
use crate::ctrl_bench::{control_plane, PUBLICATIONS, SHORT_PUBLICATIONS};
use crate::driver::{setup, teardown};
use crate::machine::{available_gib, hugepages_free, MachineInfo};
use crate::report;
use crate::util::fmt_n;
use dpdk_sys::DpdkError;
use rvs_config::model::FwdMode;
use std::time::Instant;
use thiserror::Error;

/// Bytes per session assumed for the 10M estimate when no 1M case measured them.
const FALLBACK_BYTES_PER_SESSION: f64 = 400.0;
/// Seconds per case at the largest size, at most.
const HUGE_MAX_SECONDS: f64 = 2.0;
/// Share of the available memory a case may take.
const AVAILABLE_SHARE: f64 = 0.8;

/// Whether EAL gets hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Huge {
    /// Hugepages when /dev/hugepages is mounted with free pages, else --no-huge.
    Auto,
    On,
    Off,
}

/// What to run and where to write it (the command line, parsed).
#[derive(Debug, Clone)]
pub struct Options {
    pub modes: Vec<FwdMode>,
    pub workloads: Vec<Workload>,
    /// Sessions per case (without `all`).
    pub sessions: usize,
    pub seconds: f64,
    pub short: bool,
    pub all: bool,
    pub control: bool,
    pub services: usize,
    pub huge: Huge,
    pub max_gib: f64,
    pub json: Option<String>,
    pub markdown: Option<String>,
    pub profile_notes: String,
}

/// The run could not start.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("EAL with hugepages failed ({0}); rerun with --huge off")]
    Hugepages(#[source] DpdkError),
    #[error("setup: {0}")]
    Setup(#[source] DpdkError),
}

/// Run everything `o` asks for; the number of cases that failed their correctness checks.
/// Problems writing the outputs or cleaning up are reported on stderr, not failures.
pub fn run(o: &Options) -> Result<usize, RunError> {
    let sizes: Vec<usize> = if o.all { FULL_SIZES.to_vec() } else { vec![o.sessions] };
    let huge = match o.huge {
        Huge::On => true,
        Huge::Off => false,
        Huge::Auto => hugepages_free(),
    };
    let (eal, b) = match setup(huge) {
        Ok(x) => x,
        Err(e) if huge && o.huge == Huge::Auto => return Err(RunError::Hugepages(e)),
        Err(e) => return Err(RunError::Setup(e)),
    };
    let t = Timing { seconds: if o.short { SHORT_SECONDS } else { o.seconds }, short: o.short };
    let started = Instant::now();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for &wl in &o.workloads {
        for &mode in &o.modes {
            for &n in &sizes {
                let r = run_case(&b, mode, wl, n, t);
                report::print_case(&r);
                results.push(r);
            }
        }
    }
    // The largest size: established only, when the measured bytes per session say it fits.
    if o.all && o.workloads.contains(&Workload::Established) {
        let n = HUGE_SESSIONS;
        let measured_n = FULL_SIZES[1];
        for &mode in &o.modes {
            let bps = results
                .iter()
                .filter(|r| r.mode == mode && r.workload == Workload::Established && r.sessions == measured_n)
                .find_map(|r| r.bytes_per_session)
                .unwrap_or(FALLBACK_BYTES_PER_SESSION);
            let est = estimate_gib(n, bps, mode);
            let limit = o.max_gib.min(available_gib() * AVAILABLE_SHARE);
            if est > limit {
                skipped.push(format!(
                    "{} established at {} sessions skipped: estimated {est:.1} GiB (measured {bps:.0} B/session at {} plus frames) > {limit:.1} GiB",
                    mode_name(mode),
                    fmt_n(n),
                    fmt_n(measured_n)
                ));
                continue;
            }
            let r = run_case(
                &b,
                mode,
                Workload::Established,
                n,
                Timing { seconds: t.seconds.min(HUGE_MAX_SECONDS), short: t.short },
            );
            report::print_case(&r);
            results.push(r);
        }
    }
    let control = if o.all || o.control {
        let c = control_plane(&b, o.services, if o.short { SHORT_PUBLICATIONS } else { PUBLICATIONS });
        report::print_control(&c);
        Some(c)
    } else {
        None
    };
    for s in &skipped {
        println!("note: {s}");
    }
    let failures: usize =
        results.iter().filter(|r| !r.ok()).count() + control.as_ref().map_or(0, |c| usize::from(!c.errors.is_empty()));
    println!(
        "rvs-bench: {} case(s), {} failed correctness, {:.1} s{}",
        results.len() + usize::from(control.is_some()),
        failures,
        started.elapsed().as_secs_f64(),
        if o.short { " (short: correctness only)" } else { "" }
    );
    let info = MachineInfo::collect(&b, huge);
    if let Some(path) = &o.json {
        let v = report::json(&info, o.short, t, &results, control.as_ref(), &skipped, failures);
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default()) {
            eprintln!("rvs-bench: writing {path}: {e}");
        }
    }
    if let Some(path) = &o.markdown {
        let notes = std::fs::read_to_string(&o.profile_notes).ok();
        let md = report::markdown(&info, &results, control.as_ref(), &skipped, notes.as_deref(), t);
        if let Err(e) = std::fs::write(path, md) {
            eprintln!("rvs-bench: writing {path}: {e}");
        }
    }
    drop(results);
    if let Err(e) = teardown(eal, b) {
        eprintln!("rvs-bench: rte_eal_cleanup: {e}");
    }
    Ok(failures)
}
