//! Gap analysis: why the worker loop sometimes took long between two bursts. The worker
//! thread's scheduling counters come from `/proc/thread-self/{status,schedstat,stat}` and its
//! CPU's interrupt/steal time from `/proc/stat`; the parsers are pure functions over the files'
//! text, and each long gap is attributed ([`LongGap::cause`]) to a snapshot switch, the
//! worker's `tick`, a preemption covered by run-queue wait, another involuntary context switch,
//! a page fault, or nothing the counters show.

use serde_json::json;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Gaps between two bursts longer than this are attributed one by one (the target).
pub const LONG_GAP_NS: u64 = 100_000;
/// Long gaps kept one by one (the rest are only counted), reserved before the loop.
pub const LONG_GAPS_KEPT: usize = 4096;
/// /proc/stat counts CPU time in USER_HZ ticks, 100 per second on Linux (proc(5)).
pub const USER_HZ_MS: f64 = 10.0;

/// LONG_GAP_NS in µs, as the report writes it.
pub fn long_gap_us() -> f64 {
    LONG_GAP_NS as f64 / 1e3
}

/// A thread's scheduling counters: context switches (`status`), time spent runnable but waiting
/// for a CPU (`schedstat`, ns) and page faults (`stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadStats {
    pub voluntary: u64,
    pub nonvoluntary: u64,
    pub run_wait_ns: Option<u64>,
    pub faults: Option<u64>,
}

/// `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of a `/proc/<pid>/task/<tid>/status`.
pub fn parse_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok());
    Some((field("voluntary_ctxt_switches:")?, field("nonvoluntary_ctxt_switches:")?))
}

/// The run-queue wait (ns) of a `schedstat`: "<ns on a CPU> <ns waiting on a run queue> <timeslices>".
pub fn parse_schedstat(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// Minor plus major page faults of a `stat`: "pid (comm) state ..." then minflt and majflt are
/// the 10th and 12th fields (proc(5)); the command may hold spaces and parentheses.
pub fn parse_stat_faults(stat: &str) -> Option<u64> {
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(rest.get(7)?.parse::<u64>().ok()? + rest.get(9)?.parse::<u64>().ok()?)
}

impl ThreadStats {
    /// The counters from the three files' text (the context switches are required).
    pub fn parse(status: &str, schedstat: Option<&str>, stat: Option<&str>) -> Option<ThreadStats> {
        let (voluntary, nonvoluntary) = parse_status(status)?;
        Some(ThreadStats {
            voluntary,
            nonvoluntary,
            run_wait_ns: schedstat.and_then(parse_schedstat),
            faults: stat.and_then(parse_stat_faults),
        })
    }

    /// `self - earlier`.
    pub fn since(&self, earlier: &ThreadStats) -> ThreadStats {
        ThreadStats {
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            nonvoluntary: self.nonvoluntary.saturating_sub(earlier.nonvoluntary),
            run_wait_ns: self.run_wait_ns.zip(earlier.run_wait_ns).map(|(a, z)| a.saturating_sub(z)),
            faults: self.faults.zip(earlier.faults).map(|(a, z)| a.saturating_sub(z)),
        }
    }
}

/// Reads the counters of the thread that opened it: `/proc/thread-self` resolves to that
/// thread when opened; the files are kept open and re-read from offset 0 (procfs regenerates
/// them), so a reading costs a seek and a read per file, no open.
#[derive(Debug)]
pub struct ThreadReader {
    status: Option<File>,
    schedstat: Option<File>,
    stat: Option<File>,
    bufs: [String; 3],
}

impl ThreadReader {
    pub fn open() -> ThreadReader {
        let f = |name: &str| File::open(format!("/proc/thread-self/{name}")).ok();
        ThreadReader {
            status: f("status"),
            schedstat: f("schedstat"),
            stat: f("stat"),
            bufs: [String::with_capacity(4096), String::with_capacity(256), String::with_capacity(1024)],
        }
    }

    fn reread<'b>(file: Option<&mut File>, buf: &'b mut String) -> Option<&'b str> {
        let f = file?;
        f.seek(SeekFrom::Start(0)).ok()?;
        buf.clear();
        f.read_to_string(buf).ok()?;
        Some(buf)
    }

    /// The thread's counters now (None when `status` cannot be read).
    pub fn read(&mut self) -> Option<ThreadStats> {
        let [b0, b1, b2] = &mut self.bufs;
        let status = Self::reread(self.status.as_mut(), b0)?;
        let schedstat = Self::reread(self.schedstat.as_mut(), b1);
        let stat = Self::reread(self.stat.as_mut(), b2);
        ThreadStats::parse(status, schedstat, stat)
    }
}

/// Time one CPU spent in interrupts, softirqs and stolen by the hypervisor, in USER_HZ ticks
/// (the `cpuN` line of /proc/stat: user nice system idle iowait irq softirq steal ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

/// CPU `cpu`'s ticks from the text of /proc/stat.
pub fn parse_cpu_ticks(proc_stat: &str, cpu: usize) -> Option<CpuTicks> {
    let label = format!("cpu{cpu}");
    let line = proc_stat.lines().find(|l| l.split_whitespace().next() == Some(label.as_str()))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map_while(|x| x.parse().ok()).collect();
    Some(CpuTicks { irq: *v.get(5)?, softirq: *v.get(6)?, steal: *v.get(7)? })
}

/// CPU `cpu`'s ticks now.
pub fn cpu_ticks(cpu: usize) -> Option<CpuTicks> {
    parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").ok()?, cpu)
}

/// Milliseconds of `f`'s ticks between two readings.
pub fn ticks_ms(before: Option<CpuTicks>, after: Option<CpuTicks>, f: fn(&CpuTicks) -> u64) -> Option<f64> {
    let (a, z) = before.zip(after)?;
    Some(f(&z).saturating_sub(f(&a)) as f64 * USER_HZ_MS)
}

/// What a long gap is attributed to, in this order: the first that holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// Involuntarily switched out, and the time waiting on a run queue covers the gap to within
    /// LONG_GAP_NS (without schedstat: the involuntary switch alone): the OS ran something else.
    RunQueueWait,
    /// The worker switched snapshots in that iteration.
    SnapshotSwitch,
    /// The worker's `tick` ran in that iteration.
    Tick,
    /// Involuntarily switched out, but the wait does not cover the gap.
    ContextSwitch,
    /// None of the above, but the thread took a page fault.
    PageFault,
    /// Nothing the counters show.
    Unattributed,
}

/// One gap above LONG_GAP_NS and what happened in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongGap {
    pub us: f64,
    /// The worker switched snapshots in this iteration.
    pub switch: bool,
    /// The worker's `tick` ran in this iteration.
    pub tick: bool,
    /// Involuntary / voluntary context switches of the worker thread, its time waiting on a
    /// run queue (µs) and its page faults since the previous reading (at the previous long gap,
    /// or at the loop start).
    pub nonvoluntary: u64,
    pub voluntary: u64,
    pub run_wait_us: Option<f64>,
    pub faults: Option<u64>,
}

impl LongGap {
    /// A gap of `us` with the thread's counters `delta` since the previous reading.
    pub fn new(us: f64, switch: bool, tick: bool, delta: &ThreadStats) -> LongGap {
        LongGap {
            us,
            switch,
            tick,
            nonvoluntary: delta.nonvoluntary,
            voluntary: delta.voluntary,
            run_wait_us: delta.run_wait_ns.map(|n| n as f64 / 1e3),
            faults: delta.faults,
        }
    }

    /// What the gap is attributed to.
    pub fn cause(&self) -> GapCause {
        if self.preempted() {
            GapCause::RunQueueWait
        } else if self.switch {
            GapCause::SnapshotSwitch
        } else if self.tick {
            GapCause::Tick
        } else if self.nonvoluntary > 0 {
            GapCause::ContextSwitch
        } else if self.faults.unwrap_or(0) > 0 {
            GapCause::PageFault
        } else {
            GapCause::Unattributed
        }
    }

    /// A switch, a tick or an involuntary context switch happened in the gap.
    pub fn explained(&self) -> bool {
        !matches!(self.cause(), GapCause::PageFault | GapCause::Unattributed)
    }

    /// Preempted for (nearly) all of the gap: switched out involuntarily, and the gap minus the
    /// time the thread waited on a run queue is at most LONG_GAP_NS (without schedstat: the
    /// involuntary switch alone).
    pub fn preempted(&self) -> bool {
        let covered = match self.run_wait_us {
            Some(w) => self.us - w <= long_gap_us(),
            None => true,
        };
        self.nonvoluntary > 0 && covered
    }

    /// The gap less the run-queue wait of an involuntary switch, µs: time the thread's own
    /// counters do not account for.
    pub fn remainder_us(&self) -> f64 {
        self.us - if self.nonvoluntary > 0 { self.run_wait_us.unwrap_or(0.0) } else { 0.0 }
    }

    /// The thread waited less than half of the gap: it stayed on its CPU as the guest kernel counts.
    pub fn mostly_running(&self) -> bool {
        self.remainder_us() > self.us / 2.0
    }
}

/// What a worker thread measured while forwarding DR traffic in a loop, with or without
/// snapshots being published.
#[derive(Debug, Clone, Default)]
pub struct WorkerRun {
    /// The CPU the worker was pinned to.
    pub cpu: Option<usize>,
    pub bursts: u64,
    pub loop_ms: f64,
    /// `set_snapshot` per switch, µs.
    pub switch_us: Vec<f64>,
    pub max_gap_us: f64,
    pub max_gap_switch_us: f64,
    pub p999_gap_us: f64,
    /// Gaps above LONG_GAP_NS: how many, and the first LONG_GAPS_KEPT of them.
    pub long: u64,
    pub long_gaps: Vec<LongGap>,
    /// The worker thread's counters over the loop (read before and after it).
    pub ctx: Option<ThreadStats>,
    /// Interrupt, softirq and steal time of the worker's CPU over the loop, ms.
    pub irq_ms: Option<f64>,
    pub softirq_ms: Option<f64>,
    pub steal_ms: Option<f64>,
    pub errors: Vec<String>,
}

impl WorkerRun {
    pub fn count(&self, f: impl Fn(&LongGap) -> bool) -> usize {
        self.long_gaps.iter().filter(|g| f(g)).count()
    }
    pub fn max_of(&self, f: impl Fn(&LongGap) -> bool) -> f64 {
        self.long_gaps.iter().filter(|g| f(g)).map(|g| g.us).fold(0.0, f64::max)
    }
    /// Total length of the attributed long gaps, ms.
    pub fn long_ms(&self) -> f64 {
        // A fold from +0.0: `sum` of no f64 is -0.0, which prints as "-0.0".
        self.long_gaps.iter().fold(0.0, |a, g| a + g.us) / 1e3
    }
    /// The worker's run-queue wait counted at the attributed long gaps, ms.
    pub fn long_wait_ms(&self) -> Option<f64> {
        self.long_gaps.iter().try_fold(0.0, |a, g| g.run_wait_us.map(|w| a + w)).map(|w| w / 1e3)
    }
    /// Every long gap was seen one by one (none only counted).
    pub fn complete(&self) -> bool {
        self.long as usize == self.long_gaps.len()
    }
    pub fn json(&self) -> serde_json::Value {
        let mut worst = self.long_gaps.clone();
        worst.sort_by(|a, b| b.us.total_cmp(&a.us));
        worst.truncate(20);
        json!({"cpu": self.cpu, "bursts": self.bursts, "loop_ms": self.loop_ms,
            "max_gap_us": self.max_gap_us, "max_gap_at_switch_us": self.max_gap_switch_us, "p99_9_gap_us": self.p999_gap_us,
            "gaps_over_100us": {"count": self.long, "recorded": self.long_gaps.len(),
                "with_switch": self.count(|g| g.switch), "with_tick": self.count(|g| g.tick),
                "with_nonvoluntary_ctxt_switch": self.count(|g| g.nonvoluntary > 0),
                "with_voluntary_ctxt_switch": self.count(|g| g.voluntary > 0),
                "unexplained": self.count(|g| !g.explained()), "max_unexplained_us": self.max_of(|g| !g.explained()),
                "unexplained_with_page_faults": self.count(|g| g.cause() == GapCause::PageFault),
                "total_ms": self.long_ms(), "run_queue_wait_ms": self.long_wait_ms(),
                "covered_by_run_queue_wait": self.count(|g| g.preempted()), "max_not_covered_us": self.max_of(|g| !g.preempted()),
                "without_nonvoluntary_ctxt_switch": self.count(|g| g.nonvoluntary == 0),
                "max_without_nonvoluntary_ctxt_switch_us": self.max_of(|g| g.nonvoluntary == 0),
                "longest": worst.iter().map(|g| json!({"us": g.us, "switch": g.switch, "tick": g.tick, "nonvoluntary_ctxt_switches": g.nonvoluntary, "voluntary_ctxt_switches": g.voluntary, "run_queue_wait_us": g.run_wait_us, "page_faults": g.faults})).collect::<Vec<_>>()},
            "voluntary_ctxt_switches": self.ctx.map(|c| c.voluntary), "nonvoluntary_ctxt_switches": self.ctx.map(|c| c.nonvoluntary),
            "run_queue_wait_ms": self.ctx.and_then(|c| c.run_wait_ns).map(|n| n as f64 / 1e6), "page_faults": self.ctx.and_then(|c| c.faults),
            "cpu_irq_ms": self.irq_ms, "cpu_softirq_ms": self.softirq_ms, "cpu_steal_ms": self.steal_ms,
            "errors": self.errors})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\trvs-bench\nState:\tR (running)\nTgid:\t776\nThreads:\t3\n\
        voluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t345\n";
    const SCHEDSTAT: &str = "1234567890 9876543 4021\n";
    // The command holds a space and a parenthesis: the fields count from the last ')'.
    const STAT: &str = "776 (rvs (bench) R 773 773 20313 0 -1 4194304 97 5 3 1 0 0 0 0 20 0 1 0 58991 3133440 365\n";
    const PROC_STAT: &str = "cpu  51882 0 13016 51568 561 0 120 55 0 0\n\
        cpu0 25622 0 5863 26971 126 4 23 22 0 0\n\
        cpu1 26259 0 7153 24597 434 7 97 32 0 0\n\
        intr 123 0 0\n";

    #[test]
    fn thread_counters_parse() {
        assert_eq!(parse_status(STATUS), Some((12, 345)));
        assert_eq!(parse_schedstat(SCHEDSTAT), Some(9_876_543));
        // minflt 97 + majflt 3.
        assert_eq!(parse_stat_faults(STAT), Some(100));
        assert_eq!(
            ThreadStats::parse(STATUS, Some(SCHEDSTAT), Some(STAT)),
            Some(ThreadStats { voluntary: 12, nonvoluntary: 345, run_wait_ns: Some(9_876_543), faults: Some(100) })
        );
        // Without schedstat/stat (a kernel without CONFIG_SCHEDSTATS) the switches still count.
        assert_eq!(
            ThreadStats::parse(STATUS, None, Some("garbage")),
            Some(ThreadStats { voluntary: 12, nonvoluntary: 345, run_wait_ns: None, faults: None })
        );
        assert_eq!(ThreadStats::parse("Name:\tx\n", Some(SCHEDSTAT), Some(STAT)), None);
        assert_eq!(parse_schedstat("17"), None);
    }

    #[test]
    fn counters_since_an_earlier_reading() {
        let a = ThreadStats { voluntary: 1, nonvoluntary: 2, run_wait_ns: Some(1000), faults: Some(7) };
        let z = ThreadStats { voluntary: 4, nonvoluntary: 2, run_wait_ns: Some(251_000), faults: None };
        assert_eq!(
            z.since(&a),
            ThreadStats { voluntary: 3, nonvoluntary: 0, run_wait_ns: Some(250_000), faults: None }
        );
    }

    #[test]
    fn cpu_ticks_parse_and_convert() {
        assert_eq!(parse_cpu_ticks(PROC_STAT, 1), Some(CpuTicks { irq: 7, softirq: 97, steal: 32 }));
        assert_eq!(parse_cpu_ticks(PROC_STAT, 0), Some(CpuTicks { irq: 4, softirq: 23, steal: 22 }));
        assert_eq!(parse_cpu_ticks(PROC_STAT, 2), None);
        let a = parse_cpu_ticks(PROC_STAT, 0);
        let z = Some(CpuTicks { irq: 4, softirq: 30, steal: 25 });
        assert_eq!(ticks_ms(a, z, |t| t.softirq), Some(70.0));
        assert_eq!(ticks_ms(a, z, |t| t.steal), Some(30.0));
        assert_eq!(ticks_ms(None, z, |t| t.irq), None);
    }

    fn gap(us: f64, nonvoluntary: u64, wait_us: Option<f64>, faults: Option<u64>) -> LongGap {
        LongGap { us, switch: false, tick: false, nonvoluntary, voluntary: 0, run_wait_us: wait_us, faults }
    }

    #[test]
    fn gaps_are_attributed() {
        // 850 µs, preempted, waited 800 µs: 50 µs left, within 100 µs.
        assert_eq!(gap(850.0, 1, Some(800.0), Some(0)).cause(), GapCause::RunQueueWait);
        // Preempted but waited only 300 of 850 µs: a context switch that does not cover the gap.
        let g = gap(850.0, 1, Some(300.0), Some(0));
        assert_eq!(g.cause(), GapCause::ContextSwitch);
        assert!(g.explained() && !g.preempted());
        assert_eq!(g.remainder_us(), 550.0);
        assert!(g.mostly_running());
        // Without schedstat an involuntary switch counts as a preemption.
        assert_eq!(gap(850.0, 2, None, None).cause(), GapCause::RunQueueWait);
        // No switch, a fault: page fault; nothing at all: unattributed.
        let g = gap(150.0, 0, Some(0.0), Some(3));
        assert_eq!(g.cause(), GapCause::PageFault);
        assert!(!g.explained());
        assert_eq!(gap(150.0, 0, Some(0.0), Some(0)).cause(), GapCause::Unattributed);
        assert_eq!(gap(150.0, 0, None, None).cause(), GapCause::Unattributed);
        // A switch or tick explains a gap the OS does not.
        let g = LongGap { switch: true, ..gap(150.0, 0, Some(0.0), Some(3)) };
        assert_eq!(g.cause(), GapCause::SnapshotSwitch);
        let g = LongGap { tick: true, ..gap(150.0, 0, Some(0.0), Some(0)) };
        assert_eq!(g.cause(), GapCause::Tick);
        // A voluntary switch wait is not subtracted (only an involuntary one's).
        let g = LongGap { voluntary: 1, ..gap(400.0, 0, Some(390.0), Some(0)) };
        assert_eq!(g.remainder_us(), 400.0);
    }

    #[test]
    fn long_gap_from_counter_deltas() {
        let d = ThreadStats { voluntary: 0, nonvoluntary: 1, run_wait_ns: Some(180_000), faults: Some(0) };
        let g = LongGap::new(250.0, false, false, &d);
        assert_eq!(g.run_wait_us, Some(180.0));
        assert_eq!(g.cause(), GapCause::RunQueueWait);
    }

    #[test]
    fn worker_run_summaries() {
        let run = WorkerRun {
            long: 3,
            long_gaps: vec![
                gap(850.0, 1, Some(800.0), Some(0)),
                gap(150.0, 0, Some(0.0), Some(2)),
                gap(1000.0, 1, Some(100.0), Some(0)),
            ],
            ..WorkerRun::default()
        };
        assert!(run.complete());
        assert_eq!(run.count(|g| !g.explained()), 1);
        assert_eq!(run.count(|g| g.preempted()), 1);
        assert_eq!(run.max_of(|g| !g.preempted()), 1000.0);
        assert!((run.long_ms() - 2.0).abs() < 1e-12);
        assert!((run.long_wait_ms().unwrap() - 0.9).abs() < 1e-12);
        let j = run.json();
        assert_eq!(j["gaps_over_100us"]["unexplained_with_page_faults"], 1);
        assert_eq!(j["gaps_over_100us"]["covered_by_run_queue_wait"], 1);
        assert_eq!(j["gaps_over_100us"]["longest"][0]["us"], 1000.0);
        let none = WorkerRun::default();
        assert!(none.long_ms() == 0.0 && none.long_ms().is_sign_positive());
        assert!(none.long_wait_ms().is_some_and(f64::is_sign_positive));
        let unread = WorkerRun { long_gaps: vec![gap(200.0, 1, None, None)], long: 1, ..WorkerRun::default() };
        assert_eq!(unread.long_wait_ms(), None);
        let partial = WorkerRun { long: 4, ..run };
        assert!(!partial.complete());
    }
}
