//! The report: a line per case on stdout, the JSON document (`--json`) and the markdown of
//! docs/performance.md (`--markdown`). Facts the markdown states about the bench come from the
//! code (its constants, `size_of`, the session table's own sizes) and about the machine from
//! /proc and /sys ([`crate::machine`]).

use crate::cases::{
    mode_name, CaseResult, Timing, Workload, CHURN_MIN_TUPLES, CHURN_TIMEOUT_NS, FULL_SIZES, HUGE_SESSIONS,
    MIX_EST_PER_NEW, MIX_JUMP_NS, MIX_SYN_TIMEOUT_NS, NEW_JUMP_NS, SLICES, VERIFY_EVERY,
};
use crate::ctrl_bench::{ControlResult, REALS_PER_SERVICE};
use crate::driver::{BURST, TICK_NS};
use crate::frames::{client_of, net, FCS_LEN, FRAME_LEN};
use crate::gaps::{long_gap_us, GapCause, LongGap, WorkerRun, USER_HZ_MS};
use crate::machine::{fmt_kib, thp_mode, MachineInfo};
use crate::util::{fmt_kibi, fmt_n, fmt_thousands};
use crate::NS_PER_S;
use rvs_config::model::FwdMode;
use rvs_dataplane::conn::{ConnTable, Session, Timeouts};
use rvs_dataplane::worker::WorkerConfig;
use serde_json::json;
use std::fmt::Write as _;

/// The JSON document (`--json`).
pub fn json(
    info: &MachineInfo,
    short: bool,
    t: Timing,
    results: &[CaseResult],
    control: Option<&ControlResult>,
    skipped: &[String],
    failures: usize,
) -> serde_json::Value {
    json!({"machine": info.json(), "short": short, "seconds": t.seconds,
        "size_of_session": std::mem::size_of::<Session>(),
        "cases": results.iter().map(CaseResult::json).collect::<Vec<_>>(),
        "control_plane": control.map(ControlResult::json),
        "skipped": skipped, "failures": failures})
}

/// One line per case on stdout (tests/short.rs reads it: mode, workload first, `OK` last).
pub fn print_case(r: &CaseResult) {
    let f = &r.fig;
    println!(
        "{:<8} {:<11} {:>9} sessions: {:>6.2} Mpps {:>7.1} ns/pkt {:>7.0} cyc/pkt (pipeline {:>6.1} ns) burst p50/p99/p99.9/max {}/{}/{}/{} ns | bare {:>6.2} Mpps ratio {:.2}{}{} | rx {} tx {} drops {} verified {} {}",
        mode_name(r.mode),
        r.workload.name(),
        r.sessions,
        f.mpps,
        f.ns_pkt,
        f.cycles_pkt,
        f.pipe_ns_pkt,
        f.p50,
        f.p99,
        f.p999,
        f.max,
        r.base.mpps,
        f.ratio_to(&r.base),
        r.conns_per_s.map_or(String::new(), |c| format!(" | {:.2} Mconn/s", c / 1e6)),
        r.bytes_per_session.map_or(String::new(), |x| format!(" | {x:.0} B/session")),
        r.rx,
        r.tx,
        r.drops,
        r.verified,
        if r.ok() { "OK".to_string() } else { format!("FAILED: {:?}", r.errors) }
    );
}

/// The control plane's lines on stdout.
pub fn print_control(c: &ControlResult) {
    println!(
            "control plane: {} services x {} RS: table {:.1} ms, first snapshot {:.1} ms, per-change publications {:?} ms (control thread on CPU {:?}), worker set_snapshot {:?} us{}",
            c.services,
            REALS_PER_SERVICE,
            c.table_ms,
            c.first_build_ms,
            c.build_ms.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>(),
            c.control_cpu,
            c.run.switch_us.iter().map(|x| x.round()).collect::<Vec<_>>(),
            if c.errors.is_empty() { String::new() } else { format!(" ERRORS: {:?}", c.errors) }
        );
    for (what, r) in [("publishing", &c.run), ("no publications", &c.baseline)] {
        println!(
                "  {what}: worker CPU {:?}, {} bursts in {:.0} ms, max gap {:.1} us (at a switch {:.1} us, p99.9 {:.1} us); gaps > {} us: {} = {:.2} ms, run-queue wait in them {:?} ms (switch {}, tick {}, new nonvoluntary csw {}, new voluntary csw {}, unexplained {} max {:.1} us); thread over the loop {:?}; CPU irq/softirq/steal ms {:?}/{:?}/{:?}",
                r.cpu, r.bursts, r.loop_ms, r.max_gap_us, r.max_gap_switch_us, r.p999_gap_us, long_gap_us(), r.long, r.long_ms(), r.long_wait_ms(),
                r.count(|g| g.switch), r.count(|g| g.tick), r.count(|g| g.nonvoluntary > 0), r.count(|g| g.voluntary > 0), r.count(|g| !g.explained()), r.max_of(|g| !g.explained()),
                r.ctx, r.irq_ms, r.softirq_ms, r.steal_ms
            );
    }
}

/// The project's targets (one worker, minimum-size packets): Mpps per mode with established
/// sessions, new FULLNAT connections per second, heap bytes per session, memory at the largest
/// size, and applying services.
const TARGET_MPPS: [(FwdMode, f64); 4] =
    [(FwdMode::Dr, 15.0), (FwdMode::Nat, 10.0), (FwdMode::FullNat, 10.0), (FwdMode::Tun, 10.0)];
const TARGET_FULLNAT_CPS: f64 = 1.5e6;
const TARGET_BYTES_PER_SESSION: f64 = 160.0;
const TARGET_HUGE_GIB: f64 = 2.0;
const TARGET_CONTROL_SERVICES: usize = 10_000;
const TARGET_CONTROL_MS: f64 = 1000.0;

/// Sizes of the session table the markdown states, measured through its public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSizes {
    /// `size_of::<Session>()`.
    pub session: usize,
    /// Bytes per slab slot (a session with its place on the timer wheel).
    pub slab_entry: usize,
    /// Index bytes per session of table capacity.
    pub index_per_session: usize,
}

impl TableSizes {
    /// Capacity of the table measured: a power of two, so its index has no rounding slack.
    const CAPACITY: usize = 1 << 16;

    /// Build an empty table (address space only: nothing is touched) and divide the lengths of
    /// its slab and index (`ConnTable::memory`) by its capacity.
    pub fn measure() -> TableSizes {
        let t = ConnTable::new(Self::CAPACITY, Timeouts::default());
        let [(_, slab), (_, index)] = t.memory();
        TableSizes {
            session: std::mem::size_of::<Session>(),
            slab_entry: slab / Self::CAPACITY,
            index_per_session: index / Self::CAPACITY,
        }
    }
}

/// Nanoseconds as whole seconds / milliseconds for the prose (`1000`, `2`, `20`).
fn secs(ns: u64) -> String {
    format!("{}", ns as f64 / NS_PER_S as f64)
}
fn ms(ns: u64) -> String {
    format!("{}", ns as f64 / 1e6)
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

/// Measured statements about one worker loop's gaps, for the markdown.
pub fn gap_sentences(r: &WorkerRun) -> String {
    let mut m = format!(
        "{} bursts in {:.0} ms (worker on CPU {}); longest gap between two bursts {:.1} µs, at a switch {:.1} µs, p99.9 {:.1} µs. ",
        r.bursts,
        r.loop_ms,
        r.cpu.map_or("?".into(), |c| c.to_string()),
        r.max_gap_us,
        r.max_gap_switch_us,
        r.p999_gap_us
    );
    let unexplained = r.count(|g| !g.explained());
    let gap = long_gap_us();
    let _ = write!(
        m,
        "{} gaps above {gap} µs{}, {:.1} ms in all{}: {} in an iteration with a snapshot switch, {} with the worker's `tick`, {} with a new involuntary context switch of the worker thread ({} with a new voluntary one), {} with none of these (unexplained{}). ",
        r.long,
        if r.complete() { String::new() } else { format!(" (the first {} attributed)", r.long_gaps.len()) },
        r.long_ms(),
        r.long_wait_ms().map_or(String::new(), |w| format!(", during which the worker thread waited {w:.1} ms on a run queue (`schedstat`: runnable, another task on its CPU)")),
        r.count(|g| g.switch),
        r.count(|g| g.tick),
        r.count(|g| g.nonvoluntary > 0),
        r.count(|g| g.voluntary > 0),
        unexplained,
        if unexplained > 0 { format!(", longest {:.1} µs; {} of them with a page fault of the thread", r.max_of(|g| !g.explained()), r.count(|g| g.cause() == GapCause::PageFault)) } else { String::new() }
    );
    match r.ctx {
        Some(c) => {
            let _ = write!(
                m,
                "Over the loop the worker thread had {} voluntary and {} involuntary context switches, waited {} on a run queue and took {} page faults",
                c.voluntary,
                c.nonvoluntary,
                c.run_wait_ns.map_or("?".into(), |n| format!("{:.1} ms", n as f64 / 1e6)),
                c.faults.map_or("?".into(), |f| f.to_string())
            );
        }
        None => {
            let _ = write!(m, "The worker thread's context switches could not be read");
        }
    }
    match (r.irq_ms, r.softirq_ms, r.steal_ms) {
        (Some(i), Some(s), Some(t)) => {
            let _ = write!(m, "; its CPU spent {i:.0} ms in interrupts, {s:.0} ms in softirqs and had {t:.0} ms stolen by the hypervisor (/proc/stat, {USER_HZ_MS} ms resolution).");
        }
        _ => {
            let _ = write!(m, "; its CPU's times could not be read.");
        }
    }
    m
}

/// Whether the long gaps while publishing are all preemptions of the worker thread, measured.
pub fn preemption_sentence(r: &WorkerRun) -> String {
    let nv = r.count(|g| g.nonvoluntary > 0) as u64;
    let covered = r.count(|g| g.preempted());
    let gap = long_gap_us();
    if r.long == 0 {
        return format!("No gap above {gap} µs while publishing.");
    }
    if !r.complete() {
        return format!("Only the first {} of {} gaps above {gap} µs were attributed.", r.long_gaps.len(), r.long);
    }
    let mut m = if nv == r.long {
        format!("All {} gaps above {gap} µs while publishing coincide with an involuntary context switch of the worker thread (preemption by the OS, not rvs code)", r.long)
    } else {
        format!("{} of {} gaps above {gap} µs while publishing coincide with an involuntary context switch of the worker thread; {} (longest {:.1} µs) do not", nv, r.long, r.long - nv, r.max_of(|g| g.nonvoluntary == 0))
    };
    if r.long_gaps.iter().all(|g| g.run_wait_us.is_some()) {
        let _ = write!(
            m,
            ". The thread's run-queue wait (runnable while another task ran on its CPU) covers the gap to within {gap} µs in {covered} of the {} gaps; the largest remainder (gap minus that wait) is {:.1} µs",
            r.long,
            r.long_gaps.iter().map(LongGap::remainder_us).fold(0.0, f64::max)
        );
        let n_running = r.count(LongGap::mostly_running);
        if n_running > 0 {
            let _ = write!(
                m,
                ". In {n_running} gaps (longest {:.1} µs) the thread waited less than half of the gap: it stayed on its CPU as far as the guest kernel counts (no page fault in {} of them), time these counters do not break down (they count neither interrupt handling nor time the hypervisor did not run the vCPU)",
                r.max_of(LongGap::mostly_running),
                r.count(|g| g.mostly_running() && g.faults == Some(0))
            );
        }
    }
    m.push('.');
    m
}

pub fn markdown(
    info: &MachineInfo,
    results: &[CaseResult],
    control: Option<&ControlResult>,
    skipped: &[String],
    notes: Option<&str>,
    t: Timing,
) -> String {
    let mut m = String::new();
    let gap = long_gap_us();
    let _ = writeln!(m, "# Performance\n");
    let _ =
        writeln!(m, "Generated by `rvs-bench` (crate `rvs-benches`, `benches/src/`). Regenerate with ONE command:\n");
    let _ = writeln!(m, "```sh\ncargo run --release -p rvs-benches --bin rvs-bench -- --all --markdown docs/performance.md --json target/bench.json\n```\n");
    let _ = writeln!(m, "CI runs only the correctness side (`cargo test -p rvs-benches`: `--short` for every mode and workload, no timing asserts).\n");
    let _ = writeln!(m, "## Machine\n");
    let _ = writeln!(m, "| | |\n|---|---|");
    let _ = writeln!(m, "| CPU | {} ({} logical CPUs), TSC {:.3} GHz |", info.cpu, info.cpus, info.tsc_hz as f64 / 1e9);
    let _ = writeln!(m, "| memory | {:.1} GiB |", info.mem_gib);
    let _ = writeln!(m, "| kernel | {} |", info.kernel);
    let _ = writeln!(m, "| DPDK | {} |", info.dpdk);
    let thp_note = if thp_mode(&info.thp) == Some("never") {
        "disabled: each worker's `madvise(MADV_HUGEPAGE)` of its session slab and index has no effect"
    } else {
        "each worker's session slab and index are `madvise(MADV_HUGEPAGE)`d, as rvsd does"
    };
    let _ = writeln!(m, "| transparent huge pages | `{}` ({thp_note}) |", info.thp);
    let _ = writeln!(m, "| date | {} |", info.date);
    let pages = if info.huge {
        info.hugepage_kib.map_or("hugepages".into(), |k| format!("{} hugepages", fmt_kib(k)))
    } else {
        let page = info.page_kib.map_or(String::new(), |k| format!("{} pages, ", fmt_kib(k)));
        format!("no hugepages: {page}more TLB misses")
    };
    let _ = writeln!(m, "| EAL | `{}` ({pages}) |", info.eal_args.join(" "));
    let _ = writeln!(m, "| load average at the end | {} |", info.load);
    let _ = writeln!(m, "| seconds per case | {} (bare forwarder: half) |\n", t.seconds);
    let machine = format!(
        "The machine is {} (`{}`), {} performance counters",
        if info.vm { "a VM" } else { "not a VM" },
        info.cpu,
        if info.perf_counters { "with" } else { "without" }
    );
    // The bench itself keeps one CPU busy: a 1-minute load much above 1 means other jobs ran.
    if info.shared() {
        let _ = writeln!(m, "**The machine was shared**: other jobs ran on its {} CPUs during the run (load average above), so wall-clock figures are noisy and pessimistic; the ratios to the bare forwarder, measured in the same case right before, are the steadier numbers. {machine}.\n", info.cpus);
    } else {
        let _ = writeln!(m, "The bench ran alone (a load average near 1 is the bench itself). {machine}, and its memory latency, not the instruction count, dominates from {} sessions on (see the profile below).\n", fmt_n(FULL_SIZES[1]));
    }
    let sizes = TableSizes::measure();
    let first = client_of(0);
    let [l0, l1, l2, _] = net::LADDR_NET.octets();
    let _ = writeln!(m, "## What is measured\n");
    let _ = writeln!(m, "One thread, one worker (`rvs_dataplane::worker::Worker<rvs::pkt::Pkt>`, the pipeline rvsd runs, over real DPDK mbufs), one `net_ring0` port (a bare `--vdev net_ring0`: its tx queue loops back to its rx queue). Frames are {FRAME_LEN} bytes ({} on a wire with the FCS): TCP (padded) and UDP of N distinct flows (clients {}-{} × ports), in a random order fixed per case, built in advance. The snapshot has a TCP (:{}) and a UDP (:{}) service on {} with {} real servers of the mode on the port's connected network, rr; FULLNAT with enough local addresses ({l0}.{l1}.{l2}.x) for the sessions; neighbours (gateway, real servers) are given to the worker with `Worker::learn_neigh` first, so no ARP. Per burst of {BURST} the timed loop does:\n",
        FRAME_LEN + FCS_LEN, first.ip(), net::CLIENTS, net::TCP_PORT, net::UDP_PORT, net::VIP, net::N_RS);
    let _ = writeln!(m, "1. `rte_pktmbuf_alloc_bulk` {BURST} mbufs and copy the prepared frames into them (stands in for the NIC's rx: the copy is part of the rx cost here);");
    let _ = writeln!(m, "2. `worker.process_burst(&mut burst, now, &mut io)` on the {BURST}, as rvsd's loop calls it (from {} sessions on it prefetches the burst's index buckets and sessions first; the **pipeline** columns time only this step);", fmt_kibi(WorkerConfig::default().prefetch_from));
    let _ = writeln!(m, "3. `rte_eth_tx_burst` of the output on the net_ring port, then `rte_eth_rx_burst` of the looped-back frames and free them (stands in for tx completion); 1 output frame in {VERIFY_EVERY} is checked (all of them with `--short`);");
    let _ = writeln!(
        m,
        "4. every {} ms `worker.tick(now)` as rvsd's loop does (session expiry, ARP timers).\n",
        ms(TICK_NS)
    );
    let _ = writeln!(m, "The **bare forwarder** runs the same loop over the same frames, order, mbufs and port with a MAC swap instead of step 2 and 4, interleaved with the pipeline in {SLICES} slices per case (so that load from other processes hits both); `ratio` = pipeline Mpps / bare Mpps. Not included: a real NIC (PCIe, descriptor rings, DMA), rvsd's per-loop snapshot check and stats publication, RSS and multi-core redirects. Mpps per core = packets / time of the timed loop. Burst latency = time of one iteration (steps 1-4) per burst of {BURST}, in ns (HdrHistogram). Bytes per session = heap growth (counted by a global counting allocator, `stats_alloc`) while the N sessions are opened, divided by N: it includes the session slab ({}-byte entries, grown in 64k-entry chunks), the session index (64-byte buckets of ten 6-byte slots, sized up front for two keys per session of the table's capacity, here N plus a little: {} bytes per session of capacity), the timer wheel and the growth slack of those containers at that N (bytes requested from the allocator: reserved capacity counts whether or not its pages were touched; for scale, `size_of::<Session>()` is {} bytes). At {} it is dominated by what the table reserves up front; the {} and {} figures are the meaningful ones.\n",
        sizes.slab_entry, sizes.index_per_session, sizes.session, fmt_n(FULL_SIZES[0]), fmt_n(FULL_SIZES[1]), fmt_n(HUGE_SESSIONS));
    let _ = writeln!(m, "Workloads: **established** = N flows opened first (SYN, then ACK; UDP twice), then repeated passes over one packet per flow (for NAT/FULLNAT also one reply per flow from the real server, so half the packets are replies); **new** = TCP connections on fresh tuples: SYN (scheduled, session created, forwarded) then the flow's ACK, connections/s = sessions created / time; between passes (not timed) the clock jumps {} s and `tick` expires everything; **mix** = established flows with 1 packet in {} a SYN of a new flow (their SYN_RECV timeout is {} s; between passes the clock jumps {} s to expire them); **churn** = new TCP connections over a pool of max(N, {}) tuples with every timeout at {} ms, real clock, so sessions expire through `tick` while traffic runs.\n",
        secs(NEW_JUMP_NS), MIX_EST_PER_NEW + 1, secs(MIX_SYN_TIMEOUT_NS), secs(MIX_JUMP_NS), fmt_kibi(CHURN_MIN_TUPLES), ms(CHURN_TIMEOUT_NS));
    let _ = writeln!(m, "Correctness, checked in every case (the run fails otherwise): worker rx = frames fed; tx + drops = rx; zero drops; every transmitted frame came back from the ring; no ARP request, no redirect; sampled output frames have the port's source MAC, the real server's (or gateway's) destination MAC, valid IPv4 header and TCP/UDP checksums, TTL decremented, and the addresses/ports of the mode (DR: IP header untouched; NAT: dst RIP:port, replies from VIP; FULLNAT: src a local address; TUN: IPIP outer header from the port address to the RIP, inner header valid).\n");
    for wl in Workload::ALL {
        let rows: Vec<&CaseResult> = results.iter().filter(|r| r.workload == wl).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(m, "## {}\n", wl.name());
        let _ = writeln!(m, "| mode | sessions | Mpps | ns/pkt | cycles/pkt | pipeline ns/pkt | burst p50 / p99 / p99.9 / max (ns) | bare Mpps | ratio | ns/pkt over bare | conns/s | bytes/session | check |");
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|");
        for r in rows {
            let f = &r.fig;
            let _ = writeln!(
                m,
                "| {} | {} | {:.2} | {:.1} | {:.0} | {:.1} | {} / {} / {} / {} | {:.2} | {:.2} | {:+.1} | {} | {} | {} |",
                mode_name(r.mode),
                fmt_n(r.sessions),
                f.mpps,
                f.ns_pkt,
                f.cycles_pkt,
                f.pipe_ns_pkt,
                f.p50,
                f.p99,
                f.p999,
                f.max,
                r.base.mpps,
                f.mpps / r.base.mpps.max(1e-12),
                f.ns_pkt - r.base.ns_pkt,
                r.conns_per_s.map_or("-".into(), |c| format!("{:.2} M", c / 1e6)),
                r.bytes_per_session.map_or("-".into(), |b| format!("{b:.0}")),
                if r.ok() { format!("ok ({} verified)", r.verified) } else { format!("FAILED: {}", r.errors.join("; ")) }
            );
        }
        let churn_notes: Vec<String> = results
            .iter()
            .filter(|r| r.workload == wl && wl == Workload::Churn)
            .map(|r| format!("- {} {}: {}", mode_name(r.mode), fmt_n(r.sessions), r.notes.join("; ")))
            .collect();
        if !churn_notes.is_empty() {
            let _ = writeln!(m, "\n{}", churn_notes.join("\n"));
        }
        let _ = writeln!(m);
    }
    if !skipped.is_empty() {
        let _ = writeln!(m, "Skipped:\n");
        for s in skipped {
            let _ = writeln!(m, "- {s}");
        }
        let _ = writeln!(m);
    }
    if let Some(c) = control {
        let _ = writeln!(m, "## Control plane\n");
        let max_build = c.build_ms.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(m, "{} services × {} real servers (DR, wrr). Applying them: validating into a `ServiceTable` (`add_service` each) {:.1} ms, then the first snapshot (`to_services` + `Snapshot::build`) {:.1} ms. Then {} single changes (`edit_real` of one weight + `to_services` + `Snapshot::build` + arc-swap store) by a control thread on CPU {} while a worker thread forwards DR traffic: {} ms each (max {:.1} ms). The worker (`set_snapshot` when the generation changes, between bursts, as rvsd does) took {} µs per switch.{}\n",
            c.services, REALS_PER_SERVICE, c.table_ms, c.first_build_ms, c.build_ms.len(),
            c.control_cpu.map_or("(not pinned)".into(), |x| x.to_string()),
            c.build_ms.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", "), max_build,
            c.run.switch_us.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", "),
            if c.errors.is_empty() { String::new() } else { format!(" ERRORS: {}", c.errors.join("; ")) });
        let _ = writeln!(m, "Gaps: the time between the ends of two bursts of the worker (snapshot check + burst). For each gap above {gap} µs the worker notes afterwards whether it switched snapshots and ran `tick` in that iteration, and reads its `/proc/thread-self/status` (`voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`), `schedstat` (time runnable but waiting on a run queue) and `stat` (page faults): a context switch, wait or fault counts for the gap if it happened since the previous reading (at the previous gap above {gap} µs, or at the loop start), so one that made no long gap is counted at the next long gap. These readings are the only syscalls in the loop; the clock restarts after them.\n");
        let _ = writeln!(m, "- While publishing: {}", gap_sentences(&c.run));
        let _ = writeln!(
            m,
            "- The same loop as long with nothing published (control thread idle): {}",
            gap_sentences(&c.baseline)
        );
        let _ = writeln!(m, "- {}\n", preemption_sentence(&c.run));
    }
    // Targets.
    let _ = writeln!(m, "## Targets (one worker, {}-byte packets)\n", FRAME_LEN + FCS_LEN);
    let _ = writeln!(m, "| target | measured | |\n|---|---|---|");
    let find = |mode: FwdMode, wl: Workload, n: usize| {
        results.iter().find(|r| r.mode == mode && r.workload == wl && r.sessions == n)
    };
    let [small_n, large_n] = FULL_SIZES;
    for (mode, tgt) in TARGET_MPPS {
        match find(mode, Workload::Established, large_n) {
            Some(r) => {
                let small = find(mode, Workload::Established, small_n)
                    .map_or(String::new(), |k| format!("; with {} sessions {:.2} Mpps", fmt_n(small_n), k.fig.mpps));
                let _ = writeln!(m, "| established, {} sessions, {} ≥ {tgt} Mpps | {:.2} Mpps (pipeline alone {:.1} ns/pkt = {:.1} Mpps; bare forwarder {:.2} Mpps{small}) | {} |", fmt_n(large_n), mode_name(mode), r.fig.mpps, r.fig.pipe_ns_pkt, 1e3 / r.fig.pipe_ns_pkt.max(1e-9), r.base.mpps, met(r.fig.mpps >= tgt));
            }
            None => {
                let _ = writeln!(
                    m,
                    "| established, {} sessions, {} ≥ {tgt} Mpps | not run | - |",
                    fmt_n(large_n),
                    mode_name(mode)
                );
            }
        }
    }
    // The target names no table size: both sizes are shown, and met only where it holds.
    let cps = TARGET_FULLNAT_CPS / 1e6;
    let rates: Vec<(usize, f64)> = FULL_SIZES
        .iter()
        .filter_map(|&n| find(FwdMode::FullNat, Workload::New, n).map(|r| (n, r.conns_per_s.unwrap_or(0.0))))
        .collect();
    if rates.is_empty() {
        let _ = writeln!(m, "| new connections FULLNAT ≥ {cps} M/s per core | not run | - |");
    } else {
        let text = rates
            .iter()
            .map(|(n, c)| format!("{:.2} M/s with {} sessions", c / 1e6, fmt_n(*n)))
            .collect::<Vec<_>>()
            .join(", ");
        let ok: Vec<usize> = rates.iter().filter(|(_, c)| *c >= TARGET_FULLNAT_CPS).map(|(n, _)| *n).collect();
        let verdict = if ok.len() == rates.len() {
            met(true).to_string()
        } else if ok.is_empty() {
            met(false).to_string()
        } else {
            format!("**met with {} sessions only**", ok.iter().map(|n| fmt_n(*n)).collect::<Vec<_>>().join(", "))
        };
        let _ = writeln!(m, "| new connections FULLNAT ≥ {cps} M/s per core | {text} | {verdict} |");
    }
    // Bytes per session at the large sizes (at 1k the table's initial reservation dominates).
    let bps: Vec<(FwdMode, usize, f64)> = results
        .iter()
        .filter(|r| r.workload == Workload::Established && r.sessions >= large_n)
        .filter_map(|r| r.bytes_per_session.map(|b| (r.mode, r.sessions, b)))
        .collect();
    if !bps.is_empty() {
        let worst = bps.iter().map(|x| x.2).fold(0.0, f64::max);
        let _ = writeln!(
            m,
            "| ≤ {TARGET_BYTES_PER_SESSION} bytes per session (both directions) | {} | {} |",
            bps.iter()
                .map(|(mo, n, b)| format!("{} {b:.0} B at {}", mode_name(*mo), fmt_n(*n)))
                .collect::<Vec<_>>()
                .join(", "),
            met(worst <= TARGET_BYTES_PER_SESSION)
        );
    }
    let huge = fmt_n(HUGE_SESSIONS);
    let ten: Vec<&CaseResult> =
        results.iter().filter(|r| r.sessions == HUGE_SESSIONS && r.heap_bytes.is_some()).collect();
    if ten.is_empty() {
        let ext = bps.iter().map(|x| x.2).fold(0.0, f64::max) * HUGE_SESSIONS as f64 / (1u64 << 30) as f64;
        let _ = writeln!(
            m,
            "| {huge} sessions < {TARGET_HUGE_GIB} GiB | not run; extrapolated from the largest run: {ext:.2} GiB | {} (extrapolated) |",
            met(ext < TARGET_HUGE_GIB)
        );
    } else {
        let worst = ten.iter().map(|r| r.heap_bytes.unwrap_or(0)).max().unwrap_or(0) as f64 / (1u64 << 30) as f64;
        let _ = writeln!(
            m,
            "| {huge} sessions < {TARGET_HUGE_GIB} GiB | {} | {} |",
            ten.iter()
                .map(|r| format!(
                    "{} {:.2} GiB",
                    mode_name(r.mode),
                    r.heap_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64
                ))
                .collect::<Vec<_>>()
                .join(", "),
            met(worst < TARGET_HUGE_GIB)
        );
    }
    if let Some(c) = control {
        let max_build = c.build_ms.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(m, "| control plane: {} services applied < {} s | {:.0} ms (table {:.0} ms + snapshot {:.0} ms); one change republished in max {:.0} ms | {} |", fmt_thousands(TARGET_CONTROL_SERVICES), TARGET_CONTROL_MS / 1e3, c.table_ms + c.first_build_ms, c.table_ms, c.first_build_ms, max_build, met(c.table_ms + c.first_build_ms < TARGET_CONTROL_MS && c.services >= TARGET_CONTROL_SERVICES));
        let r = &c.run;
        let _ = writeln!(m, "| no worker gap > {gap} µs while publishing | {:.1} µs max ({:.1} µs at a switch; set_snapshot max {:.0} µs); {} gaps > {gap} µs: {} with an involuntary context switch, {} unexplained; without publications: {:.1} µs max, {} gaps > {gap} µs ({} with an involuntary context switch). {} | {} |",
            r.max_gap_us, r.max_gap_switch_us, r.switch_us.iter().copied().fold(0.0, f64::max), r.long, r.count(|g| g.nonvoluntary > 0), r.count(|g| !g.explained()),
            c.baseline.max_gap_us, c.baseline.long, c.baseline.count(|g| g.nonvoluntary > 0), preemption_sentence(r), met(c.gap_target_met()));
    }
    let _ = writeln!(m);
    if let Some(n) = notes {
        let _ = writeln!(m, "{}", n.trim_end());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Figures;

    fn machine(vm: bool, perf: bool, huge: bool, load: &str, thp: &str) -> MachineInfo {
        MachineInfo {
            cpu: "Test CPU".into(),
            cpus: 2,
            vm,
            perf_counters: perf,
            mem_gib: 23.5,
            kernel: "Linux 6.1".into(),
            dpdk: "22.11.4".into(),
            date: "2026-01-01 00:00 UTC".into(),
            tsc_hz: 2_300_000_000,
            huge,
            hugepage_kib: Some(2048),
            page_kib: Some(4),
            eal_args: vec!["--no-pci".into()],
            load: load.into(),
            thp: thp.into(),
        }
    }

    fn case(mode: FwdMode, workload: Workload, sessions: usize) -> CaseResult {
        CaseResult {
            mode,
            workload,
            sessions,
            fig: Figures {
                mpps: 10.0,
                ns_pkt: 100.0,
                cycles_pkt: 230.0,
                pipe_ns_pkt: 50.0,
                p50: 1,
                p99: 2,
                p999: 3,
                max: 4,
                ..Figures::default()
            },
            base: Figures { mpps: 20.0, ns_pkt: 50.0, ..Figures::default() },
            conns_per_s: None,
            bytes_per_session: Some(300.0),
            heap_bytes: Some(300_000),
            created: 0,
            expired: 0,
            live_end: 0,
            rx: 0,
            tx: 0,
            drops: 0,
            verified: 7,
            errors: vec![],
            notes: vec![],
        }
    }

    const T: Timing = Timing { seconds: 2.0, short: false };

    #[test]
    fn machine_facts_come_from_the_machine() {
        let md = markdown(
            &machine(true, false, true, "0.99 1.10 1.21 1/79 31529", "always [madvise] never"),
            &[],
            None,
            &[],
            None,
            T,
        );
        assert!(md.contains("| CPU | Test CPU (2 logical CPUs), TSC 2.300 GHz |"), "{md}");
        assert!(md.contains("| EAL | `--no-pci` (2 MiB hugepages) |"), "{md}");
        assert!(md.contains("| transparent huge pages | `always [madvise] never` (each worker's session slab and index are `madvise(MADV_HUGEPAGE)`d, as rvsd does) |"));
        assert!(md.contains("The bench ran alone (a load average near 1 is the bench itself). The machine is a VM (`Test CPU`), without performance counters, and its memory latency"));
        let md = markdown(
            &machine(false, true, false, "2.50 1.10 1.21 1/79 31529", "always madvise [never]"),
            &[],
            None,
            &[],
            None,
            T,
        );
        assert!(md.contains("| EAL | `--no-pci` (no hugepages: 4 KiB pages, more TLB misses) |"), "{md}");
        assert!(md.contains("**The machine was shared**: other jobs ran on its 2 CPUs"));
        assert!(md.contains("The machine is not a VM (`Test CPU`), with performance counters.\n"));
        assert!(md.contains("(disabled: each worker's `madvise(MADV_HUGEPAGE)`"));
    }

    #[test]
    fn bench_facts_come_from_the_code() {
        let md = markdown(&machine(true, false, true, "1.0", ""), &[], None, &[], None, T);
        for fact in [
            "Frames are 60 bytes (64 on a wire with the FCS)",
            "(clients 192.0.2.1-250 × ports)",
            "a TCP (:80) and a UDP (:53) service on 203.0.113.100 with 8 real servers",
            "local addresses (198.51.100.x)",
            "Per burst of 32 the timed loop does",
            "1. `rte_pktmbuf_alloc_bulk` 32 mbufs",
            "on the 32, as rvsd's loop calls it (from 16k sessions on",
            "1 output frame in 257 is checked",
            "4. every 1 ms `worker.tick(now)`",
            "in 4 slices per case",
            "per burst of 32, in ns",
            "At 1k it is dominated by what the table reserves up front; the 1M and 10M figures",
            "the clock jumps 1000 s and `tick` expires everything",
            "with 1 packet in 5 a SYN of a new flow (their SYN_RECV timeout is 1 s; between passes the clock jumps 2 s",
            "a pool of max(N, 64k) tuples with every timeout at 20 ms",
            "## Targets (one worker, 64-byte packets)",
        ] {
            assert!(md.contains(fact), "missing {fact:?} in\n{md}");
        }
        let sizes = TableSizes::measure();
        assert!(sizes.slab_entry >= sizes.session && sizes.index_per_session > 0, "{sizes:?}");
        assert!(md.contains(&format!("the session slab ({}-byte entries", sizes.slab_entry)));
        assert!(md.contains(&format!("`size_of::<Session>()` is {} bytes", sizes.session)));
    }

    #[test]
    fn tables_keep_their_layout() {
        let results =
            [case(FwdMode::Dr, Workload::Established, 1_000), case(FwdMode::Nat, Workload::Established, 1_000_000)];
        let md = markdown(&machine(true, false, true, "1.0", ""), &results, None, &[], None, T);
        assert!(md.contains("\n## established\n\n| mode | sessions | Mpps | ns/pkt | cycles/pkt | pipeline ns/pkt | burst p50 / p99 / p99.9 / max (ns) | bare Mpps | ratio | ns/pkt over bare | conns/s | bytes/session | check |\n|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|\n"), "{md}");
        assert!(md.contains("\n| DR | 1k | 10.00 | 100.0 | 230 | 50.0 | 1 / 2 / 3 / 4 | 20.00 | 0.50 | +50.0 | - | 300 | ok (7 verified) |\n"), "{md}");
        assert!(!md.contains("## new"), "no rows, no section");
        assert!(md.contains("| established, 1M sessions, DR ≥ 15 Mpps | not run | - |"));
        assert!(md.contains("| established, 1M sessions, NAT ≥ 10 Mpps | 10.00 Mpps (pipeline alone 50.0 ns/pkt = 20.0 Mpps; bare forwarder 20.00 Mpps) | **met** |"), "{md}");
        assert!(md.contains("| new connections FULLNAT ≥ 1.5 M/s per core | not run | - |"));
        assert!(md.contains("| ≤ 160 bytes per session (both directions) | NAT 300 B at 1M | **not met** |"));
        // 300 B × 10M = 2.79 GiB.
        assert!(md.contains("| 10M sessions < 2 GiB | not run; extrapolated from the largest run: 2.79 GiB | **not met** (extrapolated) |"), "{md}");
    }

    #[test]
    fn control_plane_section_and_target() {
        let c = ControlResult {
            services: 10_000,
            table_ms: 300.0,
            first_build_ms: 200.0,
            build_ms: vec![4.0, 5.0],
            control_cpu: Some(0),
            run: WorkerRun::default(),
            baseline: WorkerRun::default(),
            errors: vec![],
        };
        let md = markdown(&machine(true, false, true, "1.0", ""), &[], Some(&c), &[], None, T);
        assert!(md.contains("10000 services × 10 real servers (DR, wrr)."), "{md}");
        assert!(md.contains("For each gap above 100 µs the worker notes"));
        assert!(md.contains("- No gap above 100 µs while publishing.\n"));
        assert!(md.contains("| control plane: 10,000 services applied < 1 s | 500 ms (table 300 ms + snapshot 200 ms); one change republished in max 5 ms | **met** |"), "{md}");
        assert!(md.contains("| no worker gap > 100 µs while publishing | 0.0 µs max"), "{md}");
        assert!(md.contains("its CPU's times could not be read."));
        let run = WorkerRun { irq_ms: Some(10.0), softirq_ms: Some(20.0), steal_ms: Some(0.0), ..WorkerRun::default() };
        assert!(gap_sentences(&run).ends_with(
            "its CPU spent 10 ms in interrupts, 20 ms in softirqs and had 0 ms stolen by the hypervisor (/proc/stat, 10 ms resolution)."
        ));
    }

    #[test]
    fn preemption_sentence_counts_what_the_counters_cover() {
        let g = |us: f64, nv: u64, wait: f64| LongGap {
            us,
            switch: false,
            tick: false,
            nonvoluntary: nv,
            voluntary: 0,
            run_wait_us: Some(wait),
            faults: Some(0),
        };
        let r = WorkerRun { long: 2, long_gaps: vec![g(900.0, 1, 850.0), g(300.0, 1, 50.0)], ..WorkerRun::default() };
        assert_eq!(
            preemption_sentence(&r),
            "All 2 gaps above 100 µs while publishing coincide with an involuntary context switch of the worker thread (preemption by the OS, not rvs code). The thread's run-queue wait (runnable while another task ran on its CPU) covers the gap to within 100 µs in 1 of the 2 gaps; the largest remainder (gap minus that wait) is 250.0 µs. In 1 gaps (longest 300.0 µs) the thread waited less than half of the gap: it stayed on its CPU as far as the guest kernel counts (no page fault in 1 of them), time these counters do not break down (they count neither interrupt handling nor time the hypervisor did not run the vCPU)."
        );
    }
}
