//! rvs-loadgen: the real rvsd end to end over net_memif, next to a bare memif reflector (see
//! `rvs_benches::e2e` and docs/performance-e2e.md). `--short` only checks correctness.
#![forbid(unsafe_code)]

use clap::Parser;
use rvs_benches::cases::ModeArg;
use rvs_benches::e2e::{self, Options};
use rvs_benches::parse_count;
use rvs_config::model::FwdMode;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "rvs-loadgen", about = "Load generator and sink for the real rvsd over net_memif")]
struct Args {
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    /// Established flows per case (comma-separated, k/M suffixes).
    #[arg(long, value_delimiter = ',', default_value = "1k,100k", value_parser = parse_count)]
    flows: Vec<usize>,
    /// Measured windows per case.
    #[arg(long, default_value_t = 5)]
    windows: usize,
    /// Seconds per window.
    #[arg(long, default_value_t = 1.0)]
    window_secs: f64,
    /// Correctness only: every case in lockstep, every frame checked, few flows.
    #[arg(long)]
    short: bool,
    /// 2 MiB hugepages (`--in-memory`) instead of `--no-huge` in every process.
    #[arg(long)]
    huge: bool,
    /// The rvsd binary (default: next to this one).
    #[arg(long)]
    rvsd: Option<PathBuf>,
    /// Write the markdown report here (docs/performance-e2e.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Working directory (memif socket, rvsd config and log).
    #[arg(long, default_value = "/tmp/rvs-loadgen")]
    dir: PathBuf,
    /// Internal: run as the reflector on this memif socket.
    #[arg(long, hide = true)]
    reflector: Option<PathBuf>,
    /// Internal: the reflector's CPU.
    #[arg(long, hide = true, default_value_t = 1)]
    cpu: usize,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if let Some(sock) = &a.reflector {
        return match e2e::reflect(sock, a.cpu, a.huge) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rvs-loadgen reflector: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let modes: Vec<FwdMode> = a.mode.modes();
    let flows = if a.short { vec![64] } else { a.flows.clone() };
    let o = Options {
        modes,
        flows,
        windows: a.windows.max(1),
        window_secs: a.window_secs,
        short: a.short,
        huge: a.huge,
        rvsd: a.rvsd.clone(),
        markdown: a.markdown.clone(),
        dir: a.dir.clone(),
    };
    match e2e::run(&o) {
        Ok(r) => {
            let failed = r.failed();
            println!("rvs-loadgen: {} case(s), {failed} failed", r.cases.len() + usize::from(r.reflector.is_some()));
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("rvs-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
