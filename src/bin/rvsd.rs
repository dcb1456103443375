//! rvsd: the rvs gateway daemon.
#![forbid(unsafe_code)]

use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "rvsd", version = rvs::version(), about = "rvs layer-4 load-balancing gateway (DPDK)")]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, default_value = "/etc/rvs/rvsd.toml")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cfg = match rvs_config::file::Config::from_path(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rvsd: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("rvsd: {}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    match rvs::daemon::run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvsd: {e}");
            ExitCode::from(1)
        }
    }
}
