//! rvsd: the rvs gateway daemon.
#![forbid(unsafe_code)]

use clap::Parser;
use rvs::reload::LogFilterError;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "rvsd", version = rvs::version(), about = "rvs layer-4 load-balancing gateway (DPDK)")]
struct Args {
    /// Configuration file (TOML). SIGHUP or `rvsadm --reload` reads it again.
    #[arg(short, long, default_value = "/etc/rvs/rvsd.toml")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // RUST_LOG, when set, decides the log filter; otherwise the config's [log] level, which a
    // reload may change.
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
    let initial =
        rust_log.as_deref().and_then(|v| EnvFilter::try_new(v).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(initial)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    if rust_log.is_some() && std::env::var("RUST_LOG").ok().and_then(|v| EnvFilter::try_new(v).ok()).is_none() {
        tracing::warn!("RUST_LOG is not a valid filter; logging at info");
    }

    let cfg = match rvs_config::file::Config::from_path(&args.config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(config = %args.config.display(), field = e.field().unwrap_or(""), "configuration refused: {e}");
            eprintln!("rvsd: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("rvsd: {}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    let set_log: Option<rvs::reload::LogSetter> = if rust_log.is_some() {
        tracing::info!("RUST_LOG is set: it overrides the config's log.level");
        None
    } else {
        let set = move |level: &str| -> Result<(), LogFilterError> {
            let f = EnvFilter::try_new(level)
                .map_err(|source| LogFilterError::Parse { level: level.to_string(), source })?;
            Ok(handle.reload(f)?)
        };
        if let Err(e) = set(&cfg.log.level) {
            tracing::warn!("{e}; logging at info");
        }
        Some(Box::new(set))
    };
    let opts = rvs::daemon::RunOptions { config_path: args.config.clone(), set_log };
    match rvs::daemon::run(cfg, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rvsd: {e}");
            ExitCode::from(1)
        }
    }
}
