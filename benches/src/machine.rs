//! The machine the bench ran on, read from /proc and /sys: CPU model and count, whether it is a
//! VM and has performance counters, memory, page sizes, transparent huge pages, load, online
//! CPUs. The parsers are pure functions over the files' text; [`MachineInfo::collect`] reads them.

use crate::driver::Bench;
use serde_json::json;

/// The bench keeps one CPU busy: a 1-minute load average above this means other jobs ran.
pub const SHARED_LOAD: f64 = 1.5;
/// Free 2 MiB hugepages EAL needs for its memory (`-m 512`).
const HUGEPAGES_NEEDED: u64 = 256;

/// The value of the first `key : value` line of /proc/cpuinfo.
pub fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The CPU model (`model name`), "unknown" without one.
pub fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo_field(cpuinfo, "model name").unwrap_or("unknown").to_string()
}

/// Logical CPUs: the `processor` entries.
pub fn logical_cpus(cpuinfo: &str) -> usize {
    cpuinfo.lines().filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor")).count()
}

/// The CPU runs under a hypervisor: the `hypervisor` flag (x86) of the first CPU.
pub fn is_vm(cpuinfo: &str) -> bool {
    cpuinfo_field(cpuinfo, "flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"))
}

/// Whether a hardware PMU is among the perf event sources (`/sys/bus/event_source/devices`):
/// `cpu` (x86), `cpu_core`/`cpu_atom` (hybrid x86), `armv8_*`/`armv7_*` (Arm). A VM without
/// PMU passthrough has only software sources (`software`, `tracepoint`, ...).
pub fn has_cpu_pmu<S: AsRef<str>>(event_sources: &[S]) -> bool {
    event_sources.iter().map(AsRef::as_ref).any(|n| n == "cpu" || n.starts_with("cpu_") || n.starts_with("armv"))
}

/// A `Key:   value kB` line of /proc/meminfo (or `HugePages_Free: n`, without unit).
pub fn meminfo_value(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// The page size of the first mapping of a `/proc/<pid>/smaps` (`KernelPageSize:  4 kB`), KiB.
pub fn smaps_page_kib(smaps: &str) -> Option<u64> {
    meminfo_value(smaps, "KernelPageSize")
}

/// The mode in effect of a `/sys/kernel/mm/transparent_hugepage/enabled` (the bracketed one).
pub fn thp_mode(enabled: &str) -> Option<&str> {
    enabled.split_whitespace().find_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
}

/// The 1-minute load average of /proc/loadavg.
pub fn load1(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// A hugetlbfs is mounted on /dev/hugepages (in the text of /proc/mounts).
pub fn hugetlbfs_mounted(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace().skip(1);
        (f.next(), f.next()) == (Some("/dev/hugepages"), Some("hugetlbfs"))
    })
}

/// A CPU list as sysfs writes it (`0-1,4`); None if malformed.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut ids = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let mut ends = part.splitn(2, '-').map(|x| x.parse::<usize>());
        match (ends.next(), ends.next()) {
            (Some(Ok(a)), None) => ids.push(a),
            (Some(Ok(a)), Some(Ok(z))) if a <= z => ids.extend(a..=z),
            _ => return None,
        }
    }
    Some(ids)
}

/// KiB as the report writes a page size: `2 MiB`, `4 KiB`.
pub fn fmt_kib(kib: u64) -> String {
    if kib >= 1024 && kib.is_multiple_of(1024) {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The machine's online CPUs (`/sys/devices/system/cpu/online`, e.g. `0-1,4`), not this
/// thread's affinity mask (EAL's `-l 0` pinned the main thread and what it spawns to CPU 0);
/// the affinity mask only if sysfs cannot be parsed.
pub fn online_cpus() -> Vec<core_affinity::CoreId> {
    match parse_cpu_list(&read("/sys/devices/system/cpu/online")) {
        Some(ids) => ids.into_iter().map(|id| core_affinity::CoreId { id }).collect(),
        None => core_affinity::get_core_ids().unwrap_or_default(),
    }
}

/// Hugepages usable: /dev/hugepages mounted with enough free pages.
pub fn hugepages_free() -> bool {
    let free = meminfo_value(&read("/proc/meminfo"), "HugePages_Free").unwrap_or(0);
    hugetlbfs_mounted(&read("/proc/mounts")) && free >= HUGEPAGES_NEEDED
}

/// Memory available now (MemAvailable), GiB.
pub fn available_gib() -> f64 {
    meminfo_value(&read("/proc/meminfo"), "MemAvailable").map_or(0.0, |kb| kb as f64 / 1024.0 / 1024.0)
}

fn cmd(prog: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(prog).args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// What the report says about the machine.
#[derive(Debug, Clone)]
pub struct MachineInfo {
    pub cpu: String,
    pub cpus: usize,
    /// The CPU has the `hypervisor` flag.
    pub vm: bool,
    /// A hardware PMU is available to perf.
    pub perf_counters: bool,
    pub mem_gib: f64,
    pub kernel: String,
    pub dpdk: String,
    pub date: String,
    pub tsc_hz: u64,
    pub huge: bool,
    /// Size of a hugepage (`Hugepagesize`) and of a normal page, KiB.
    pub hugepage_kib: Option<u64>,
    pub page_kib: Option<u64>,
    pub eal_args: Vec<String>,
    pub load: String,
    /// `/sys/kernel/mm/transparent_hugepage/enabled` (the workers' session tables are advised).
    pub thp: String,
}

impl MachineInfo {
    pub fn collect(b: &Bench, huge: bool) -> MachineInfo {
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let sources: Vec<String> = std::fs::read_dir("/sys/bus/event_source/devices")
            .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        MachineInfo {
            cpu: cpu_model(&cpuinfo),
            cpus: logical_cpus(&cpuinfo),
            vm: is_vm(&cpuinfo),
            perf_counters: has_cpu_pmu(&sources),
            mem_gib: meminfo_value(&meminfo, "MemTotal").map_or(0.0, |kb| kb as f64 / 1024.0 / 1024.0),
            kernel: cmd("uname", &["-sr"]).unwrap_or_default(),
            dpdk: cmd("pkg-config", &["--modversion", "libdpdk"]).unwrap_or_else(|| "unknown".into()),
            date: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            tsc_hz: b.hz,
            huge,
            hugepage_kib: meminfo_value(&meminfo, "Hugepagesize"),
            page_kib: smaps_page_kib(&read("/proc/self/smaps")),
            eal_args: b.eal_args.clone(),
            load: read("/proc/loadavg").trim().to_string(),
            thp: read("/sys/kernel/mm/transparent_hugepage/enabled").trim().to_string(),
        }
    }

    /// Other jobs ran during the run (1-minute load average above SHARED_LOAD).
    pub fn shared(&self) -> bool {
        load1(&self.load).unwrap_or(0.0) > SHARED_LOAD
    }

    pub fn json(&self) -> serde_json::Value {
        json!({"cpu": self.cpu, "cpus": self.cpus, "mem_gib": self.mem_gib, "kernel": self.kernel, "dpdk": self.dpdk,
            "date": self.date, "tsc_hz": self.tsc_hz, "hugepages": self.huge, "eal_args": self.eal_args, "loadavg_at_end": self.load, "transparent_hugepage": self.thp})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\
        flags\t\t: fpu vme de pse tsc msr hypervisor lahf_lm\n\nprocessor\t: 1\n\
        model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu vme hypervisor\n\n";
    const BARE: &str = "processor\t: 0\nmodel name\t: AMD EPYC 7763\nflags\t\t: fpu arch_perfmon\n";
    const MEMINFO: &str = "MemTotal:       24641536 kB\nMemFree:         1000000 kB\nMemAvailable:   12320768 kB\n\
        HugePages_Total:     512\nHugePages_Free:      300\nHugepagesize:       2048 kB\n";

    #[test]
    fn cpuinfo_parses() {
        assert_eq!(cpu_model(CPUINFO), "Intel(R) Xeon(R) Processor");
        assert_eq!(logical_cpus(CPUINFO), 2);
        assert!(is_vm(CPUINFO));
        assert_eq!(cpu_model(BARE), "AMD EPYC 7763");
        assert_eq!(logical_cpus(BARE), 1);
        assert!(!is_vm(BARE));
        assert_eq!(cpu_model(""), "unknown");
        // "hypervisor" only as a whole flag.
        assert!(!is_vm("flags\t: nohypervisorx\n"));
    }

    #[test]
    fn pmu_is_a_hardware_event_source() {
        assert!(!has_cpu_pmu(&["breakpoint", "msr", "software", "tracepoint", "uprobe"]));
        assert!(has_cpu_pmu(&["cpu", "software"]));
        assert!(has_cpu_pmu(&["cpu_core", "cpu_atom"]));
        assert!(has_cpu_pmu(&["armv8_pmuv3_0"]));
        assert!(!has_cpu_pmu::<&str>(&[]));
    }

    #[test]
    fn meminfo_and_smaps_parse() {
        assert_eq!(meminfo_value(MEMINFO, "MemTotal"), Some(24_641_536));
        assert_eq!(meminfo_value(MEMINFO, "MemAvailable"), Some(12_320_768));
        assert_eq!(meminfo_value(MEMINFO, "HugePages_Free"), Some(300));
        assert_eq!(meminfo_value(MEMINFO, "Hugepagesize"), Some(2048));
        // A key must match whole: "Mem" is no key.
        assert_eq!(meminfo_value(MEMINFO, "Mem"), None);
        let smaps = "55d0c0000000-55d0c0002000 r--p 00000000 08:01 123 /usr/bin/x\nSize:   8 kB\n\
            KernelPageSize:        4 kB\nMMUPageSize:        4 kB\n";
        assert_eq!(smaps_page_kib(smaps), Some(4));
        assert_eq!(fmt_kib(2048), "2 MiB");
        assert_eq!(fmt_kib(4), "4 KiB");
        assert_eq!(fmt_kib(1_048_576), "1024 MiB");
    }

    #[test]
    fn sysfs_and_proc_lines_parse() {
        assert_eq!(thp_mode("always [madvise] never\n"), Some("madvise"));
        assert_eq!(thp_mode("[always] madvise never"), Some("always"));
        assert_eq!(thp_mode(""), None);
        assert_eq!(load1("0.99 1.10 1.21 1/79 31529\n"), Some(0.99));
        assert_eq!(load1(""), None);
        assert_eq!(parse_cpu_list("0-1,4\n"), Some(vec![0, 1, 4]));
        assert_eq!(parse_cpu_list("3"), Some(vec![3]));
        assert_eq!(parse_cpu_list("2-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        let mounts = "sysfs /sys sysfs rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n";
        assert!(hugetlbfs_mounted(mounts));
        assert!(!hugetlbfs_mounted("tmpfs /dev/hugepages tmpfs rw 0 0\n"));
    }
}
