//! rvs-bench: the command line of the rvs benchmark (see the `rvs_benches` library and
//! docs/performance.md). `--short` only checks correctness.
#![forbid(unsafe_code)]

use clap::{Parser, ValueEnum};
use rvs_benches::cases::{ModeArg, Workload};
use rvs_benches::{parse_count, Huge, Options};
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WorkloadArg {
    Established,
    New,
    Mix,
    Churn,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HugeArg {
    /// Hugepages when /dev/hugepages is mounted with free pages, else --no-huge.
    Auto,
    On,
    Off,
}

#[derive(Parser, Debug)]
#[command(name = "rvs-bench", about = "Benchmark rvsd's worker pipeline over DPDK mbufs")]
struct Args {
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    #[arg(long, value_enum, default_value = "all")]
    workload: WorkloadArg,
    /// Sessions (flows) per case, with k/M suffixes.
    #[arg(long, default_value = "1k", value_parser = parse_count)]
    sessions: usize,
    /// Measured seconds per case (the bare forwarder gets half).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Seconds-long run that only asserts correctness (no figures are judged).
    #[arg(long)]
    short: bool,
    /// Full run: every mode and workload at 1k and 1M sessions, established at 10M when it fits
    /// in memory, and the control-plane benchmark.
    #[arg(long)]
    all: bool,
    /// Also run the control-plane benchmark (always with --all).
    #[arg(long)]
    control: bool,
    /// Services for the control-plane benchmark.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    #[arg(long, value_enum, default_value = "auto")]
    huge: HugeArg,
    /// Skip cases whose estimated memory exceeds this many GiB.
    #[arg(long, default_value_t = 16.0)]
    max_gib: f64,
    #[arg(long)]
    json: Option<String>,
    #[arg(long)]
    markdown: Option<String>,
    /// Hand-written profile notes (callgrind evidence) copied into the markdown.
    #[arg(long, default_value = "benches/PROFILE.md")]
    profile_notes: String,
}

impl Args {
    fn options(self) -> Options {
        let modes = self.mode.modes();
        let workloads = match self.workload {
            WorkloadArg::Established => vec![Workload::Established],
            WorkloadArg::New => vec![Workload::New],
            WorkloadArg::Mix => vec![Workload::Mix],
            WorkloadArg::Churn => vec![Workload::Churn],
            WorkloadArg::All => Workload::ALL.to_vec(),
        };
        let huge = match self.huge {
            HugeArg::Auto => Huge::Auto,
            HugeArg::On => Huge::On,
            HugeArg::Off => Huge::Off,
        };
        Options {
            modes,
            workloads,
            sessions: self.sessions,
            seconds: self.seconds,
            short: self.short,
            all: self.all,
            control: self.control,
            services: self.services,
            huge,
            max_gib: self.max_gib,
            json: self.json,
            markdown: self.markdown,
            profile_notes: self.profile_notes,
        }
    }
}

fn main() -> ExitCode {
    match rvs_benches::run(&Args::parse().options()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_failures) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rvs-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
