//! The control-plane benchmark: applying thousands of services (a `ServiceTable`, then a
//! snapshot), republishing single changes from a control thread, and the gaps they cause in a
//! worker thread forwarding at the same time, next to the same loop with nothing published.
//! The gaps are attributed by [`crate::gaps`].

use crate::cases::snapshot;
use crate::driver::{Bench, Driver, BURST};
use crate::frames::{client_frame, Frame};
use crate::gaps::{cpu_ticks, ticks_ms, LongGap, ThreadReader, WorkerRun, LONG_GAPS_KEPT, LONG_GAP_NS};
use crate::machine::online_cpus;
use crate::stats::{ns_histogram, Acc};
use crate::NS_PER_S;
use arc_swap::ArcSwap;
use rvs::pkt::Pkt;
use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service, ServiceKey};
use rvs_config::services::ServiceTable;
use rvs_dataplane::snapshot::Tunables;
use rvs_dataplane::worker::{Worker, WorkerConfig};
use rvs_dataplane::Snapshot;
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Real servers per service.
pub const REALS_PER_SERVICE: u8 = 10;
/// Flows the worker thread forwards (opened first, then one packet each in turn).
const LOOP_FLOWS: u64 = 1000;
/// Publications in a timed run (`--short`: 2).
pub const PUBLICATIONS: usize = 10;
pub const SHORT_PUBLICATIONS: usize = 2;

/// Control plane: snapshots of `n_svc` services × 10 real servers, and the gaps between two
/// bursts of a worker thread forwarding while a control thread publishes them, next to the
/// same worker loop for as long without publications (`baseline`).
#[derive(Debug)]
pub struct ControlResult {
    pub services: usize,
    /// Validating the services into a ServiceTable (`add_service` each).
    pub table_ms: f64,
    /// The first snapshot of them (`to_services` + `Snapshot::build`).
    pub first_build_ms: f64,
    pub build_ms: Vec<f64>,
    /// The CPU the control (publishing) thread was pinned to.
    pub control_cpu: Option<usize>,
    pub run: WorkerRun,
    pub baseline: WorkerRun,
    pub errors: Vec<String>,
}

impl ControlResult {
    /// The worker-gap target: no gap above 100 µs at a switch, none unexplained, and every
    /// other one a preemption of the worker thread by the OS (see `LongGap::preempted`).
    pub fn gap_target_met(&self) -> bool {
        let r = &self.run;
        r.complete()
            && r.max_gap_switch_us <= crate::gaps::long_gap_us()
            && r.count(|g| !g.explained()) == 0
            && r.count(|g| !g.preempted()) == 0
    }
}

/// `n` TCP services (203.0.113.150+, ports 1000-1999) of REALS_PER_SERVICE DR real servers,
/// wrr; service `tweak` has a first real server of weight 2.
pub fn services(n: usize, tweak: usize) -> Vec<Service> {
    (0..n)
        .map(|i| {
            let vip = Ipv4Addr::new(203, 0, 113, 150 + (i / 1000) as u8);
            let port = 1000 + (i % 1000) as u16;
            let mut s =
                Service::new(ServiceKey { proto: Proto::Tcp, vip: SocketAddr::new(vip.into(), port) }, SchedKind::Wrr);
            s.reals = (0..REALS_PER_SERVICE)
                .map(|j| RealServer {
                    addr: SocketAddr::new(Ipv4Addr::new(203, 0, 113, 21 + j).into(), port),
                    fwd: FwdMode::Dr,
                    weight: if i == tweak % n.max(1) && j == 0 { 2 } else { 1 },
                    u_threshold: 0,
                    l_threshold: 0,
                })
                .collect();
            s
        })
        .collect()
}

/// A worker thread's loop as rvsd runs it (snapshot check, burst), pinned to `cpu`, until
/// `stop` or `until` (ns of loop time). Measures the gap between the ends of two bursts; for a
/// gap above LONG_GAP_NS it notes afterwards whether a switch and a `tick` happened in that
/// iteration and reads the thread's context switches (the only syscalls inside the loop, on
/// that slow path; the clock restarts after them so they are not counted in the next gap).
fn worker_loop(
    b: &Bench,
    shared: &ArcSwap<Snapshot>,
    stop: &AtomicBool,
    cpu: Option<core_affinity::CoreId>,
    until: Option<u64>,
) -> WorkerRun {
    let pinned = cpu.filter(|c| core_affinity::set_for_current(*c)).map(|c| c.id);
    let reg = dpdk_sys::register_thread().is_ok();
    let mut d = Driver::new(b, FwdMode::Dr, 1024);
    let mut w: Worker<Pkt> =
        Worker::new(WorkerConfig { max_sessions: 4096, ..WorkerConfig::default() }, shared.load_full());
    d.learn(&mut w);
    let frames: Vec<Frame> =
        (0..LOOP_FLOWS).map(|i| client_frame(i, false)).chain((0..LOOP_FLOWS).map(|i| client_frame(i, true))).collect();
    let flows = LOOP_FLOWS as u32;
    let open: Vec<u32> = (0..flows).collect();
    let seq: Vec<u32> = (flows..2 * flows).collect();
    let mut acc = Acc::new();
    d.pass(Some(&mut w), &frames, &open, &mut acc, None, None);
    let mut gaps = ns_histogram();
    let mut switch_us = Vec::with_capacity(1024);
    let mut long_gaps: Vec<LongGap> = Vec::with_capacity(LONG_GAPS_KEPT);
    let mut long = 0u64;
    let mut max_switch_gap = 0u64;
    let mut bursts = 0u64;
    let mut k = 0usize;
    let mut ctx_reader = ThreadReader::open();
    let cpu0 = pinned.and_then(cpu_ticks);
    let ctx0 = ctx_reader.read();
    let mut ctx_prev = ctx0;
    let start_tsc = dpdk_sys::tsc();
    let end_tsc = until
        .map_or(u64::MAX, |ns| start_tsc.saturating_add((ns as u128 * u128::from(b.hz) / u128::from(NS_PER_S)) as u64));
    let mut last = start_tsc;
    let mut now = start_tsc;
    while !stop.load(Ordering::Relaxed) && now < end_tsc {
        let t0 = dpdk_sys::tsc();
        let mut switched = false;
        {
            let s = shared.load();
            if s.generation != w.generation() {
                w.set_snapshot(arc_swap::Guard::into_inner(s));
                switched = true;
                switch_us.push((dpdk_sys::tsc() - t0) as f64 / b.hz as f64 * 1e6);
            }
        }
        let tick_before = d.last_tick_ns;
        let start = k % seq.len();
        d.burst(Some(&mut w), &frames, &seq[start..start + BURST.min(seq.len() - start)], &mut acc, None);
        k += BURST;
        now = dpdk_sys::tsc();
        let gap = ((now - last) as u128 * u128::from(NS_PER_S) / u128::from(b.hz)) as u64;
        gaps.saturating_record(gap);
        if switched {
            max_switch_gap = max_switch_gap.max(gap);
        }
        last = now;
        bursts += 1;
        if gap > LONG_GAP_NS {
            // Slow path, after the fact: what took this iteration's time.
            long += 1;
            if long_gaps.len() < LONG_GAPS_KEPT {
                let ctx = ctx_reader.read();
                let delta = ctx.zip(ctx_prev).map(|(c, p)| c.since(&p)).unwrap_or_default();
                ctx_prev = ctx;
                long_gaps.push(LongGap::new(gap as f64 / 1e3, switched, d.last_tick_ns != tick_before, &delta));
                last = dpdk_sys::tsc();
                now = last;
            }
        }
    }
    let loop_ms = (now - start_tsc) as f64 / b.hz as f64 * 1e3;
    let ctx1 = ctx_reader.read();
    let cpu1 = pinned.and_then(cpu_ticks);
    let mut errors = acc.errors.clone();
    if w.counters().total_drops() > 0 {
        errors.push(format!("worker dropped {} packets while snapshots changed", w.counters().total_drops()));
    }
    if pinned.is_none() {
        errors.push("worker thread could not be pinned to a CPU".into());
    }
    drop(w);
    drop(d);
    if reg {
        dpdk_sys::unregister_thread();
    }
    WorkerRun {
        cpu: pinned,
        bursts,
        loop_ms,
        switch_us,
        max_gap_us: gaps.max() as f64 / 1e3,
        max_gap_switch_us: max_switch_gap as f64 / 1e3,
        p999_gap_us: gaps.value_at_quantile(0.999) as f64 / 1e3,
        long,
        long_gaps,
        ctx: ctx1.zip(ctx0).map(|(z, a)| z.since(&a)),
        irq_ms: ticks_ms(cpu0, cpu1, |t| t.irq),
        softirq_ms: ticks_ms(cpu0, cpu1, |t| t.softirq),
        steal_ms: ticks_ms(cpu0, cpu1, |t| t.steal),
        errors,
    }
}

/// Run the control-plane benchmark with `n_svc` services and `publications` changes.
pub fn control_plane(b: &Bench, n_svc: usize, publications: usize) -> ControlResult {
    let mut errors = Vec::new();
    // Time to apply: validate into a ServiceTable, then compile the snapshot.
    let t = Instant::now();
    let mut table = ServiceTable::new();
    for s in services(n_svc, 0) {
        if let Err(e) = table.add_service(s) {
            errors.push(format!("service table: {e}"));
            break;
        }
    }
    let table_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let first = snapshot(b, None, 1, FwdMode::Dr, 1, Tunables::default(), &table.to_services());
    let first_build_ms = t.elapsed().as_secs_f64() * 1e3;
    let shared = ArcSwap::from(match first {
        Ok(s) => s,
        Err(e) => {
            errors.push(format!("snapshot: {e}"));
            return ControlResult {
                services: n_svc,
                table_ms,
                first_build_ms,
                build_ms: vec![],
                control_cpu: None,
                run: WorkerRun::default(),
                baseline: WorkerRun::default(),
                errors,
            };
        }
    });
    // The worker on the last CPU (as before), the control thread on another one. The CPUs come
    // from sysfs, not from `core_affinity::get_core_ids` (this thread's affinity mask): EAL's
    // `-l 0` pinned the main thread, and with it every thread it spawns, to CPU 0.
    let cpus = online_cpus();
    let worker_cpu = cpus.last().copied();
    let control_cpu = cpus.iter().copied().find(|c| Some(c.id) != worker_cpu.map(|w| w.id));
    if control_cpu.is_none() {
        errors.push(format!("no CPU for the control thread other than the worker's ({} CPUs)", cpus.len()));
    }
    let stop = AtomicBool::new(false);
    let (run, (build_ms, control_pinned, cerr)) = std::thread::scope(|sc| {
        let worker = sc.spawn(|| worker_loop(b, &shared, &stop, worker_cpu, None));
        let control = sc.spawn(|| {
            let pinned = control_cpu.filter(|c| core_affinity::set_for_current(*c)).map(|c| c.id);
            let mut build_ms = Vec::new();
            let mut errs = Vec::new();
            std::thread::sleep(Duration::from_millis(100));
            let mut retired: Vec<Arc<Snapshot>> = Vec::new();
            for g in 2..2 + publications as u64 {
                // One change, as `rvsadm -e` makes it: edit a real server, compile, publish.
                let t = Instant::now();
                let i = (g as usize * 7919) % n_svc.max(1);
                if let Some(svc) = table.list().get(i).map(|s| (*s).clone()) {
                    let mut r = svc.reals[0];
                    r.weight = 1 + (g % 5) as u32;
                    if let Err(e) = table.edit_real(&svc.key, r) {
                        errs.push(format!("edit_real: {e}"));
                    }
                }
                // As rvsd's control thread: build from the current snapshot (unchanged services
                // shared) and keep the replaced one alive here, so the worker only drops a reference.
                let prev = shared.load_full();
                match snapshot(b, Some(&prev), g, FwdMode::Dr, 1, Tunables::default(), &table.to_services()) {
                    Ok(s) => {
                        shared.store(s);
                        retired.push(prev);
                        if retired.len() > 2 {
                            retired.remove(0);
                        }
                        build_ms.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Err(e) => errs.push(format!("snapshot {g}: {e}")),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(50));
            (build_ms, pinned, errs)
        });
        let c = control.join().expect("control thread");
        stop.store(true, Ordering::Relaxed);
        (worker.join().expect("worker thread"), c)
    });
    errors.extend(cerr);
    errors.extend(run.errors.iter().cloned());
    if control_cpu.is_some() && control_pinned.is_none() {
        errors.push("control thread could not be pinned to a CPU".into());
    }
    if run.switch_us.len() != publications {
        errors.push(format!("worker switched {} times for {publications} publications", run.switch_us.len()));
    }
    // The same loop, as long, with nothing published (the control thread idle).
    let stop = AtomicBool::new(false);
    let baseline = std::thread::scope(|sc| {
        sc.spawn(|| worker_loop(b, &shared, &stop, worker_cpu, Some((run.loop_ms * 1e6) as u64)))
            .join()
            .expect("baseline worker thread")
    });
    errors.extend(baseline.errors.iter().map(|e| format!("baseline: {e}")));
    if !baseline.switch_us.is_empty() {
        errors.push(format!("baseline: worker switched {} times with nothing published", baseline.switch_us.len()));
    }
    ControlResult {
        services: n_svc,
        table_ms,
        first_build_ms,
        build_ms,
        control_cpu: control_pinned,
        run,
        baseline,
        errors,
    }
}

impl ControlResult {
    /// The control plane's part of the JSON document.
    pub fn json(&self) -> serde_json::Value {
        json!({"services": self.services, "table_ms": self.table_ms, "first_snapshot_ms": self.first_build_ms,
            "snapshot_build_ms": self.build_ms, "control_cpu": self.control_cpu, "set_snapshot_us": self.run.switch_us,
            "max_gap_us": self.run.max_gap_us, "max_gap_at_switch_us": self.run.max_gap_switch_us, "p99_9_gap_us": self.run.p999_gap_us, "bursts": self.run.bursts,
            "publishing": self.run.json(), "baseline_no_publications": self.baseline.json(), "gap_target_met": self.gap_target_met(), "errors": self.errors})
    }
}
