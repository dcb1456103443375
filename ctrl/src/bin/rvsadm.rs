//! rvsadm: ipvsadm-compatible administration of rvsd over its control socket.
//!
//! `rvsadm [--socket PATH] <ipvsadm arguments>`, plus `rvsadm link show [--json]`,
//! `rvsadm laddr add|del|show ...`, `rvsadm addr|route|neigh ...` and `rvsadm version`. Exit status: 0 success, 1 refused by rvsd or rvsd unreachable,
//! 2 bad command line.
#![forbid(unsafe_code)]

use rvs_ctrl::display::{
    format_addrs, format_conns, format_laddrs, format_link, format_list, format_neighs, format_rates, format_routes,
    format_save, format_stats, format_timeouts,
};
use rvs_ctrl::ipvsadm::{self, Command, USAGE};
use rvs_ctrl::{Client, Request, Response, DEFAULT_SOCKET};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Why rvsadm stops: usage errors exit 2, everything else 1.
enum Fail {
    Usage(String),
    Run(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("rvsadm: {m}");
            eprintln!("Try 'rvsadm --help' for more information.");
            ExitCode::from(2)
        }
        Err(Fail::Run(m)) => {
            eprintln!("rvsadm: {m}");
            ExitCode::from(1)
        }
    }
}

/// Take `--socket PATH` / `--socket=PATH` out of the arguments, wherever it is.
fn take_socket(args: Vec<String>) -> Result<(PathBuf, Vec<String>), Fail> {
    let mut socket = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--socket" {
            let v = it.next().ok_or_else(|| Fail::Usage("option --socket needs a path".into()))?;
            socket = Some(PathBuf::from(v));
        } else if let Some(v) = a.strip_prefix("--socket=") {
            socket = Some(PathBuf::from(v));
        } else {
            rest.push(a);
        }
    }
    let socket = socket
        .or_else(|| std::env::var_os("RVSADM_SOCKET").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    Ok((socket, rest))
}

fn run(args: Vec<String>) -> Result<(), Fail> {
    let (socket, args) = take_socket(args)?;
    match args.first().map(String::as_str) {
        Some("link") => {
            let json = match &args[1..] {
                [s] if s == "show" => false,
                [s, j] if s == "show" && j == "--json" => true,
                _ => return Err(Fail::Usage("usage: rvsadm link show [--json]".into())),
            };
            let resp = send(&socket, &Request::LinkShow)?;
            print_response(resp, Output::Link { json })
        }
        Some("laddr") => {
            let cmd = ipvsadm::parse_laddr_subcommand(&args[1..]).map_err(|e| Fail::Usage(e.to_string()))?;
            run_command(&socket, cmd)
        }
        Some(w @ ("addr" | "route" | "neigh")) => {
            let cmd = match w {
                "addr" => ipvsadm::parse_addr_subcommand(&args[1..]),
                "route" => ipvsadm::parse_route_subcommand(&args[1..]),
                _ => ipvsadm::parse_neigh_subcommand(&args[1..]),
            }
            .map_err(|e| Fail::Usage(e.to_string()))?;
            run_command(&socket, cmd)
        }
        Some("version") => {
            if args.len() > 1 {
                return Err(Fail::Usage("usage: rvsadm version".into()));
            }
            version(&socket)
        }
        _ => {
            let cmd = ipvsadm::parse(&args).map_err(|e| Fail::Usage(e.to_string()))?;
            run_command(&socket, cmd)
        }
    }
}

fn run_command(socket: &std::path::Path, cmd: Command) -> Result<(), Fail> {
    match cmd {
        Command::Help => {
            print!(
                "rvsadm {} - administer rvs virtual services (ipvsadm syntax)\n\n{USAGE}",
                env!("CARGO_PKG_VERSION")
            );
            Ok(())
        }
        Command::Version => version(socket),
        Command::Restore => restore(socket),
        cmd => {
            let out = match &cmd {
                Command::List { json, .. } => Output::List { json: *json },
                Command::Save => Output::Save,
                Command::GetLaddr { json, .. } => Output::Laddrs { json: *json },
                Command::GetTimeouts { json } => Output::Timeouts { json: *json },
                Command::GetExpireNodestConn => Output::Expire,
                Command::ListStats { json, exact, .. } => Output::Stats { json: *json, exact: *exact },
                Command::ListRate { json, exact, .. } => Output::Rates { json: *json, exact: *exact },
                Command::ListConns { json, .. } => Output::Conns { json: *json },
                Command::AddrShow { json, .. } => Output::Addrs { json: *json },
                Command::RouteShow { json } => Output::Routes { json: *json },
                Command::NeighShow { json, .. } => Output::Neighs { json: *json },
                Command::NeighFlush { .. } => Output::NeighFlushed,
                _ => Output::None,
            };
            let Some(req) = cmd.to_request() else {
                return Err(Fail::Run("internal error: command without a request".into()));
            };
            let resp = send(socket, &req)?;
            print_response(resp, out)
        }
    }
}

fn send(socket: &std::path::Path, req: &Request) -> Result<Response, Fail> {
    rvs_ctrl::request(socket, req).map_err(|e| Fail::Run(e.to_string()))
}

fn version(socket: &std::path::Path) -> Result<(), Fail> {
    println!("rvsadm {}", env!("CARGO_PKG_VERSION"));
    let resp = send(socket, &Request::Version)?;
    print_response(resp, Output::Version)
}

/// `-R`: parse every line of stdin first (nothing is applied if one is malformed), then send
/// them in order over one connection, stopping at the first one rvsd refuses.
fn restore(socket: &std::path::Path) -> Result<(), Fail> {
    let mut reqs = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| Fail::Run(format!("reading stdin: {e}")))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let cmd = ipvsadm::parse(&words).map_err(|e| Fail::Usage(format!("stdin line {}: {e}", n + 1)))?;
        match cmd {
            Command::AddService(_)
            | Command::EditService(_)
            | Command::DelService(_)
            | Command::AddReal { .. }
            | Command::EditReal { .. }
            | Command::DelReal { .. }
            | Command::Clear
            | Command::AddLaddr { .. }
            | Command::DelLaddr { .. }
            | Command::SetTimeouts { .. }
            | Command::SetExpireNodestConn(_) => {}
            _ => {
                return Err(Fail::Usage(format!(
                    "stdin line {}: only -A -E -D -C -a -e -d --add-laddr --del-laddr --set \
                     --set-expire-nodest-conn can be restored",
                    n + 1
                )))
            }
        }
        if let Some(r) = cmd.to_request() {
            reqs.push((n + 1, r));
        }
    }
    let mut client = Client::connect(socket).map_err(|e| Fail::Run(e.to_string()))?;
    for (n, req) in reqs {
        match client.request(&req).map_err(|e| Fail::Run(e.to_string()))? {
            Response::Ok => {}
            Response::Error { message } => return Err(Fail::Run(format!("stdin line {n}: {message}"))),
            other => return Err(Fail::Run(format!("stdin line {n}: unexpected response from rvsd: {other:?}"))),
        }
    }
    Ok(())
}

enum Output {
    None,
    List { json: bool },
    Save,
    Link { json: bool },
    Version,
    Laddrs { json: bool },
    Timeouts { json: bool },
    Expire,
    Stats { json: bool, exact: bool },
    Rates { json: bool, exact: bool },
    Conns { json: bool },
    Addrs { json: bool },
    Routes { json: bool },
    Neighs { json: bool },
    NeighFlushed,
}

fn pretty(v: &impl serde::Serialize) -> Result<String, Fail> {
    let mut s = serde_json::to_string_pretty(v).map_err(|e| Fail::Run(e.to_string()))?;
    s.push('\n');
    Ok(s)
}

fn json_pairs(pairs: &[(String, u64)]) -> serde_json::Value {
    serde_json::Value::Object(pairs.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect())
}

fn print_response(resp: Response, out: Output) -> Result<(), Fail> {
    let text = match (resp, out) {
        (Response::Error { message }, _) => return Err(Fail::Run(message)),
        (Response::Ok, Output::None) => String::new(),
        (Response::Reloaded { changes }, Output::None) => {
            if changes.is_empty() {
                "reloaded: no changes\n".to_string()
            } else {
                changes.iter().map(|c| format!("reloaded: {c}\n")).collect()
            }
        }
        (Response::Services { services }, Output::List { json: false }) => format_list(&services),
        (Response::Services { services }, Output::List { json: true }) => {
            let mut s = serde_json::to_string_pretty(&services).map_err(|e| Fail::Run(e.to_string()))?;
            s.push('\n');
            s
        }
        (Response::Services { services }, Output::Save) => format_save(&services),
        (Response::Link { ports, counters }, Output::Link { json: false }) => format_link(&ports, &counters),
        (Response::Link { ports, counters }, Output::Link { json: true }) => {
            let ports: Vec<serde_json::Value> = ports
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.name, "port_id": p.port_id, "driver": p.driver, "mac": p.mac,
                        "link_up": p.link_up, "stats": json_pairs(&p.stats),
                    })
                })
                .collect();
            let v = serde_json::json!({ "ports": ports, "counters": json_pairs(&counters) });
            let mut s = serde_json::to_string_pretty(&v).map_err(|e| Fail::Run(e.to_string()))?;
            s.push('\n');
            s
        }
        (Response::Version { version }, Output::Version) => format!("rvsd {version}\n"),
        (Response::Laddrs { services }, Output::Laddrs { json: false }) => format_laddrs(&services),
        (Response::Laddrs { services }, Output::Laddrs { json: true }) => {
            let mut s = serde_json::to_string_pretty(&services).map_err(|e| Fail::Run(e.to_string()))?;
            s.push('\n');
            s
        }
        (Response::Timeouts { tcp, tcpfin, udp }, Output::Timeouts { json: false }) => {
            format_timeouts(tcp, tcpfin, udp)
        }
        (Response::Timeouts { tcp, tcpfin, udp }, Output::Timeouts { json: true }) => {
            format!("{}\n", serde_json::json!({ "tcp": tcp, "tcpfin": tcpfin, "udp": udp }))
        }
        (Response::ExpireNodestConn { enabled }, Output::Expire) => {
            format!("expire_nodest_conn {}\n", if enabled { "on" } else { "off" })
        }
        (Response::Stats { services }, Output::Stats { json: false, exact }) => format_stats(&services, exact),
        (Response::Stats { services }, Output::Stats { json: true, .. }) => pretty(&services)?,
        (Response::Rates { interval_ms, services }, Output::Rates { json: false, exact }) => {
            format_rates(&services, interval_ms, exact)
        }
        (Response::Rates { interval_ms, services }, Output::Rates { json: true, .. }) => {
            pretty(&serde_json::json!({ "interval_ms": interval_ms, "services": services }))?
        }
        (Response::Conns { conns, total, missing_workers }, Output::Conns { json: false }) => {
            format_conns(&conns, total, &missing_workers)
        }
        (Response::Conns { conns, total, missing_workers }, Output::Conns { json: true }) => {
            pretty(&serde_json::json!({ "conns": conns, "total": total, "missing_workers": missing_workers }))?
        }
        (Response::Addrs { ports }, Output::Addrs { json: false }) => format_addrs(&ports),
        (Response::Addrs { ports }, Output::Addrs { json: true }) => pretty(&ports)?,
        (Response::Routes { routes }, Output::Routes { json: false }) => format_routes(&routes),
        (Response::Routes { routes }, Output::Routes { json: true }) => pretty(&routes)?,
        (Response::Neighs { neighs, missing_workers }, Output::Neighs { json: false }) => {
            format_neighs(&neighs, &missing_workers)
        }
        (Response::Neighs { neighs, missing_workers }, Output::Neighs { json: true }) => {
            pretty(&serde_json::json!({ "neighs": neighs, "missing_workers": missing_workers }))?
        }
        (Response::NeighFlushed { removed, missing_workers }, Output::NeighFlushed) => {
            let mut s = format!("{removed} neighbour entries flushed\n");
            if !missing_workers.is_empty() {
                let ids: Vec<String> = missing_workers.iter().map(u32::to_string).collect();
                s.push_str(&format!("# worker(s) {} did not answer in time: not flushed\n", ids.join(",")));
            }
            s
        }
        (other, _) => return Err(Fail::Run(format!("unexpected response from rvsd: {other:?}"))),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`rvsadm -L | head`) is not an error worth reporting.
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    Ok(())
}
