//! ipvsadm's command-line syntax, parsed into a [`Command`].
//!
//! Hand-written rather than clap: ipvsadm's grammar is "one command letter plus options that
//! depend on it", with getopt-style clustering (`-Ln`, `-tVIP:PORT`), an optional argument
//! (`-p [TIMEOUT]`) and per-command option rules, which map poorly to a derive parser.
//!
//! Differences from ipvsadm: the default scheduler is `wrr` (kept from the first release, so
//! existing scripts keep their behaviour; give `-s wlc` for ipvsadm's); names are never resolved
//! (`-n` is accepted and implied); `--json` is an rvs extension of `-L`.
//!
//! DPVS extensions: `-b/--fullnat`, `-P/--add-laddr`, `-Q/--del-laddr`, `-G/--get-laddr` with
//! `-z/--laddr LIP` (and `-F/--ifname IFNAME`, accepted and ignored: rvs answers ARP for local
//! addresses on every port), `--proxy-protocol v2`. rvs extensions: `--client-addr
//! toa|proxy-v2|none`, `--set-expire-nodest-conn on|off`, `--get-expire-nodest-conn`, and the
//! `laddr add|del|show` subcommand ([`parse_laddr_subcommand`]).

use crate::proto::{Request, DEFAULT_MAX_CONNS, MAX_TIMEOUT_S};
use rvs_config::model::{
    self, is_contiguous_netmask, BadRealAddr, ClientAddrMode, FwdMode, Persistence, Proto, RealServer, SchedKind,
    Service, ServiceKey, UnknownName,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Scheduler used when `-A`/`-E` give no `-s`.
pub const DEFAULT_SCHED: SchedKind = SchedKind::Wrr;
/// ipvsadm's persistence timeout when `-p` has no value, seconds.
pub const DEFAULT_PERSISTENT_S: u32 = Persistence::DEFAULT_TIMEOUT_S;

/// One ipvsadm invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `-A`
    AddService(Service),
    /// `-E`
    EditService(Service),
    /// `-D`
    DelService(ServiceKey),
    /// `-a`
    AddReal { key: ServiceKey, real: RealServer },
    /// `-e`
    EditReal { key: ServiceKey, real: RealServer },
    /// `-d`
    DelReal { key: ServiceKey, addr: SocketAddr },
    /// `-C`
    Clear,
    /// `-L`/`-l` (also the default with no command): all services or one.
    List { key: Option<ServiceKey>, json: bool },
    /// `-S`: print the table as ipvsadm commands (for `-R`).
    Save,
    /// `-R`: read ipvsadm commands from stdin.
    Restore,
    /// `-h`
    Help,
    /// `-v`
    Version,
    /// `--add-laddr -t|-u VIP:PORT -z LIP` (DPVS), `laddr add`
    AddLaddr { key: ServiceKey, addr: IpAddr },
    /// `--del-laddr -t|-u VIP:PORT -z LIP` (DPVS), `laddr del`
    DelLaddr { key: ServiceKey, addr: IpAddr },
    /// `--get-laddr [-t|-u VIP:PORT]` (DPVS), `laddr show`
    GetLaddr { key: Option<ServiceKey>, json: bool },
    /// `--set TCP TCPFIN UDP` (seconds, 0 = unchanged)
    SetTimeouts { tcp: u32, tcpfin: u32, udp: u32 },
    /// `-L --timeout`
    GetTimeouts { json: bool },
    /// `--set-expire-nodest-conn on|off`
    SetExpireNodestConn(bool),
    /// `--get-expire-nodest-conn`
    GetExpireNodestConn,
    /// `-L --stats [--exact] [-t|-u VIP:PORT]`
    ListStats { key: Option<ServiceKey>, json: bool, exact: bool },
    /// `-L --rate [--exact] [-t|-u VIP:PORT]`
    ListRate { key: Option<ServiceKey>, json: bool, exact: bool },
    /// `-L -c [-t|-u VIP:PORT] [-r RIP[:PORT]] [--max N]`
    ListConns { key: Option<ServiceKey>, real: Option<SocketAddr>, max: u32, json: bool },
    /// `-Z [-t|-u VIP:PORT]`
    Zero(Option<ServiceKey>),
    /// `--reload`
    Reload,
    /// `addr add IP/LEN dev PORT`
    AddrAdd { addr: Ipv4Addr, len: u8, dev: String },
    /// `addr del IP/LEN dev PORT`
    AddrDel { addr: Ipv4Addr, len: u8, dev: String },
    /// `addr show [dev PORT]`
    AddrShow { dev: Option<String>, json: bool },
    /// `route add PREFIX/LEN [via GW] dev PORT`
    RouteAdd { prefix: Ipv4Addr, len: u8, via: Option<Ipv4Addr>, dev: String },
    /// `route del PREFIX/LEN [via GW] [dev PORT]`
    RouteDel { prefix: Ipv4Addr, len: u8, via: Option<Ipv4Addr>, dev: Option<String> },
    /// `route show`
    RouteShow { json: bool },
    /// `neigh show [dev PORT]`
    NeighShow { dev: Option<String>, json: bool },
    /// `neigh flush [dev PORT]`
    NeighFlush { dev: Option<String> },
}

impl Command {
    /// The request that carries this command to rvsd (`None` for `-h` and `-R`, which the CLI
    /// handles itself; `-R` sends one request per line it reads).
    pub fn to_request(&self) -> Option<Request> {
        Some(match self {
            Command::AddService(s) => Request::AddService { service: s.clone() },
            Command::EditService(s) => Request::EditService { service: s.clone() },
            Command::DelService(k) => Request::DelService { key: *k },
            Command::AddReal { key, real } => Request::AddReal { key: *key, real: *real },
            Command::EditReal { key, real } => Request::EditReal { key: *key, real: *real },
            Command::DelReal { key, addr } => Request::DelReal { key: *key, addr: *addr },
            Command::Clear => Request::Clear,
            Command::List { key, .. } => Request::List { key: *key },
            Command::Save => Request::List { key: None },
            Command::Version => Request::Version,
            Command::AddLaddr { key, addr } => Request::AddLaddr { key: *key, addr: *addr },
            Command::DelLaddr { key, addr } => Request::DelLaddr { key: *key, addr: *addr },
            Command::GetLaddr { key, .. } => Request::GetLaddr { key: *key },
            Command::SetTimeouts { tcp, tcpfin, udp } => Request::SetTimeouts { tcp: *tcp, tcpfin: *tcpfin, udp: *udp },
            Command::GetTimeouts { .. } => Request::GetTimeouts,
            Command::SetExpireNodestConn(on) => Request::SetExpireNodestConn { enabled: *on },
            Command::GetExpireNodestConn => Request::GetExpireNodestConn,
            Command::ListStats { key, .. } => Request::Stats { key: *key },
            Command::ListRate { key, .. } => Request::Rate { key: *key },
            Command::ListConns { key, real, max, .. } => Request::ListConns { key: *key, real: *real, max: *max },
            Command::Zero(key) => Request::Zero { key: *key },
            Command::Reload => Request::Reload,
            Command::AddrAdd { addr, len, dev } => Request::AddrAdd { addr: *addr, len: *len, dev: dev.clone() },
            Command::AddrDel { addr, len, dev } => Request::AddrDel { addr: *addr, len: *len, dev: dev.clone() },
            Command::AddrShow { dev, .. } => Request::AddrShow { dev: dev.clone() },
            Command::RouteAdd { prefix, len, via, dev } => {
                Request::RouteAdd { prefix: *prefix, len: *len, via: *via, dev: dev.clone() }
            }
            Command::RouteDel { prefix, len, via, dev } => {
                Request::RouteDel { prefix: *prefix, len: *len, via: *via, dev: dev.clone() }
            }
            Command::RouteShow { .. } => Request::RouteShow,
            Command::NeighShow { dev, .. } => Request::NeighShow { dev: dev.clone() },
            Command::NeighFlush { dev } => Request::NeighFlush { dev: dev.clone() },
            Command::Help | Command::Restore => return None,
        })
    }
}

/// A command line that is not valid ipvsadm syntax. The message (`Display`) is what rvsadm
/// prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An option rvsadm does not know (`--name` or `-c` as given).
    #[error("unknown option '{0}'")]
    UnknownOption(String),
    /// An ipvsadm option rvs does not implement, with why.
    #[error("{0}")]
    Unsupported(&'static str),
    /// An option given without its value (`--name`, `-c`, as given).
    #[error("option {0} needs a value")]
    NeedsValue(String),
    /// A long option without argument given `--name=VALUE`.
    #[error("option --{0} takes no value")]
    TakesNoValue(String),
    /// The same option twice (its `-c (--name)` form).
    #[error("option {0} given twice")]
    GivenTwice(String),
    /// A word that is neither an option nor an option's value.
    #[error("unexpected argument '{0}'")]
    UnexpectedArgument(String),
    /// A numeric option out of range or not a number.
    #[error("{opt}: '{value}' is not a number in 0..={max}")]
    BadNumber { opt: String, value: String, max: u32 },
    /// `-t`/`-u` that is not `VIP:PORT` (`no_port`: a bare address).
    #[error("{}", bad_service_addr(.input, *.no_port))]
    BadServiceAddr { input: String, no_port: bool },
    /// `-r` that is not `RIP[:PORT]`.
    #[error(transparent)]
    BadRealAddr(#[from] BadRealAddr),
    /// `-s` naming no scheduler.
    #[error(transparent)]
    UnknownName(#[from] UnknownName),
    /// `--client-addr` naming no mode (`opt` is the option's `-c (--name)` form).
    #[error("{opt}: {source}")]
    ClientAddr { opt: String, source: UnknownName },
    /// A command that needs a service got none (`cmd` as `-c (--name)`).
    #[error("{0} needs a service: -t VIP:PORT or -u VIP:PORT")]
    NeedsService(String),
    /// A command that needs a real server got none.
    #[error("{0} needs a real server: -r RIP[:PORT]")]
    NeedsReal(String),
    /// A command that needs a local address got none.
    #[error("{0} needs a local address: -z LIP")]
    NeedsLaddr(String),
    /// Any other rule of the grammar (options that do not go together, subcommand usage, bad
    /// values of one option), with its message.
    #[error("{0}")]
    Usage(String),
}

fn bad_service_addr(input: &str, no_port: bool) -> String {
    if no_port {
        format!("'{input}' has no port: a service is VIP:PORT")
    } else {
        format!("'{input}' is not a valid IPv4 address:port")
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Usage(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    A,
    E,
    D,
    C,
    AddR,
    EditR,
    DelR,
    L,
    S,
    R,
    H,
    V,
    /// `--set`
    Set,
    /// `-P --add-laddr`
    AddL,
    /// `-Q --del-laddr`
    DelL,
    /// `-G --get-laddr`
    GetL,
    /// `--set-expire-nodest-conn`
    SetExpire,
    /// `--get-expire-nodest-conn`
    GetExpire,
    /// `-Z --zero`
    Z,
    /// `--reload`
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Cmd(Cmd),
    Tcp,
    Udp,
    Sched,
    Real,
    Fwd(FwdMode),
    Weight,
    UThresh,
    LThresh,
    Persistent,
    Netmask,
    Numeric,
    Json,
    /// `-z --laddr LIP`
    Laddr,
    /// `-F --ifname IFNAME` (DPVS; ignored)
    Ifname,
    /// `--client-addr MODE`
    ClientAddr,
    /// `--proxy-protocol VERSION` (DPVS)
    ProxyProtocol,
    /// `--timeout` (with -L)
    Timeout,
    /// `--stats` (with -L)
    Stats,
    /// `--rate` (with -L)
    Rate,
    /// `--exact` (with --stats/--rate)
    Exact,
    /// `-c --connection` (with -L)
    Connection,
    /// `--max N` (with -L -c)
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    No,
    Required,
    Optional,
    /// `--set TCP TCPFIN UDP`
    Three,
}

struct OptSpec {
    short: Option<char>,
    long: &'static str,
    opt: Opt,
    arg: Arg,
}

const fn spec(short: Option<char>, long: &'static str, opt: Opt, arg: Arg) -> OptSpec {
    OptSpec { short, long, opt, arg }
}

const OPTS: &[OptSpec] = &[
    spec(Some('A'), "add-service", Opt::Cmd(Cmd::A), Arg::No),
    spec(Some('E'), "edit-service", Opt::Cmd(Cmd::E), Arg::No),
    spec(Some('D'), "delete-service", Opt::Cmd(Cmd::D), Arg::No),
    spec(Some('C'), "clear", Opt::Cmd(Cmd::C), Arg::No),
    spec(Some('a'), "add-server", Opt::Cmd(Cmd::AddR), Arg::No),
    spec(Some('e'), "edit-server", Opt::Cmd(Cmd::EditR), Arg::No),
    spec(Some('d'), "delete-server", Opt::Cmd(Cmd::DelR), Arg::No),
    spec(Some('L'), "list", Opt::Cmd(Cmd::L), Arg::No),
    spec(Some('l'), "list", Opt::Cmd(Cmd::L), Arg::No),
    spec(Some('S'), "save", Opt::Cmd(Cmd::S), Arg::No),
    spec(Some('R'), "restore", Opt::Cmd(Cmd::R), Arg::No),
    spec(Some('h'), "help", Opt::Cmd(Cmd::H), Arg::No),
    spec(Some('v'), "version", Opt::Cmd(Cmd::V), Arg::No),
    spec(Some('t'), "tcp-service", Opt::Tcp, Arg::Required),
    spec(Some('u'), "udp-service", Opt::Udp, Arg::Required),
    spec(Some('s'), "scheduler", Opt::Sched, Arg::Required),
    spec(Some('r'), "real-server", Opt::Real, Arg::Required),
    spec(Some('g'), "gatewaying", Opt::Fwd(FwdMode::Dr), Arg::No),
    spec(Some('i'), "ipip", Opt::Fwd(FwdMode::Tun), Arg::No),
    spec(Some('m'), "masquerading", Opt::Fwd(FwdMode::Nat), Arg::No),
    spec(Some('b'), "fullnat", Opt::Fwd(FwdMode::FullNat), Arg::No),
    spec(Some('w'), "weight", Opt::Weight, Arg::Required),
    spec(Some('x'), "u-threshold", Opt::UThresh, Arg::Required),
    spec(Some('y'), "l-threshold", Opt::LThresh, Arg::Required),
    spec(Some('p'), "persistent", Opt::Persistent, Arg::Optional),
    spec(Some('M'), "netmask", Opt::Netmask, Arg::Required),
    spec(Some('n'), "numeric", Opt::Numeric, Arg::No),
    spec(None, "json", Opt::Json, Arg::No),
    spec(None, "set", Opt::Cmd(Cmd::Set), Arg::Three),
    spec(Some('P'), "add-laddr", Opt::Cmd(Cmd::AddL), Arg::No),
    spec(Some('Q'), "del-laddr", Opt::Cmd(Cmd::DelL), Arg::No),
    spec(Some('G'), "get-laddr", Opt::Cmd(Cmd::GetL), Arg::No),
    spec(None, "set-expire-nodest-conn", Opt::Cmd(Cmd::SetExpire), Arg::Required),
    spec(None, "get-expire-nodest-conn", Opt::Cmd(Cmd::GetExpire), Arg::No),
    spec(Some('z'), "laddr", Opt::Laddr, Arg::Required),
    spec(Some('F'), "ifname", Opt::Ifname, Arg::Required),
    spec(None, "client-addr", Opt::ClientAddr, Arg::Required),
    spec(None, "proxy-protocol", Opt::ProxyProtocol, Arg::Required),
    spec(None, "timeout", Opt::Timeout, Arg::No),
    spec(None, "stats", Opt::Stats, Arg::No),
    spec(None, "rate", Opt::Rate, Arg::No),
    spec(None, "exact", Opt::Exact, Arg::No),
    spec(Some('c'), "connection", Opt::Connection, Arg::No),
    spec(None, "max", Opt::Max, Arg::Required),
    spec(Some('Z'), "zero", Opt::Cmd(Cmd::Z), Arg::No),
    spec(None, "reload", Opt::Cmd(Cmd::Reload), Arg::No),
];

/// ipvsadm options rvs knows but does not implement yet.
const UNSUPPORTED: &[(Option<char>, &str, &str)] = &[
    (Some('f'), "fwmark-service", "firewall-mark services (-f) are not supported yet"),
    (None, "start-daemon", "connection sync daemons are not supported"),
    (None, "stop-daemon", "connection sync daemons are not supported"),
    (None, "thresholds", "--thresholds is not supported yet"),
    (None, "persistent-conn", "--persistent-conn is not supported yet"),
    (None, "sort", "--sort is not supported yet"),
    (None, "daemon", "connection sync daemons are not supported"),
    (Some('6'), "ipv6", "IPv6 services are not supported yet"),
    (Some('o'), "ops", "one-packet scheduling (-o) is not supported yet"),
    (Some('j'), "tun-type", "tunnel types (-j) are not supported yet"),
    (Some('k'), "sched-flags", "scheduler flags (-b/--sched-flags) are not supported yet"),
];

fn opt_name(o: Opt) -> String {
    let s = OPTS.iter().find(|s| s.opt == o).expect("every Opt is in OPTS");
    match s.short {
        Some(c) => format!("-{c} (--{})", s.long),
        None => format!("--{}", s.long),
    }
}

fn cmd_name(c: Cmd) -> String {
    opt_name(Opt::Cmd(c))
}

fn short_cmd(c: Cmd) -> String {
    let s = OPTS.iter().find(|s| s.opt == Opt::Cmd(c)).expect("every Cmd is in OPTS");
    match s.short {
        Some(c) => format!("-{c}"),
        None => format!("--{}", s.long),
    }
}

/// Which commands an option may go with.
fn allowed_with(o: Opt) -> &'static [Cmd] {
    use Cmd::*;
    match o {
        Opt::Tcp | Opt::Udp => &[A, E, D, AddR, EditR, DelR, L, AddL, DelL, GetL, Z],
        Opt::Sched | Opt::Persistent | Opt::Netmask | Opt::ClientAddr | Opt::ProxyProtocol => &[A, E],
        // With -L: the real-server filter of -c.
        Opt::Real => &[AddR, EditR, DelR, L],
        Opt::Fwd(_) | Opt::Weight | Opt::UThresh | Opt::LThresh => &[AddR, EditR],
        Opt::Numeric => &[L, S, GetL],
        Opt::Json => &[L, GetL],
        Opt::Laddr | Opt::Ifname => &[AddL, DelL],
        Opt::Timeout | Opt::Stats | Opt::Rate | Opt::Exact | Opt::Connection | Opt::Max => &[L],
        Opt::Cmd(_) => &[],
    }
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Options collected from the command line, before checking them against the command.
#[derive(Default)]
struct Seen {
    cmd: Option<Cmd>,
    svc: Option<(Proto, SocketAddr)>,
    sched: Option<SchedKind>,
    real: Option<SocketAddr>,
    fwd: Option<FwdMode>,
    weight: Option<u32>,
    u: Option<u32>,
    l: Option<u32>,
    persistent: Option<u32>,
    netmask: Option<Ipv4Addr>,
    numeric: bool,
    json: bool,
    laddr: Option<IpAddr>,
    client_addr: Option<ClientAddrMode>,
    timeout: bool,
    stats: bool,
    rate: bool,
    exact: bool,
    conns: bool,
    max: Option<u32>,
    /// `--set` values.
    set: Option<[u32; 3]>,
    /// `--set-expire-nodest-conn` value.
    expire: Option<bool>,
    /// Every option given, in order, to check against the command.
    given: Vec<Opt>,
}

/// `VIP:PORT` of `-t`/`-u`.
pub fn parse_service_addr(s: &str) -> Result<SocketAddr, ParseError> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    Err(ParseError::BadServiceAddr { input: s.to_string(), no_port: s.parse::<IpAddr>().is_ok() })
}

/// `RIP[:PORT]` of `-r` (no port = the service port, as 0).
pub fn parse_real_addr(s: &str) -> Result<SocketAddr, ParseError> {
    Ok(model::parse_real_addr(s)?)
}

fn parse_num(o: Opt, v: &str, max: u32) -> Result<u32, ParseError> {
    match v.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(ParseError::BadNumber { opt: opt_name(o), value: v.to_string(), max }),
    }
}

impl Seen {
    fn set(&mut self, o: Opt, val: Option<&str>) -> Result<(), ParseError> {
        if let Opt::Cmd(c) = o {
            if let Some(prev) = self.cmd {
                if prev != c {
                    return err(format!(
                        "only one command may be given, not both {} and {}",
                        short_cmd(prev),
                        short_cmd(c)
                    ));
                }
            }
            self.cmd = Some(c);
            match c {
                Cmd::Set => {
                    let vals: Vec<&str> = val.unwrap_or("").split(' ').collect();
                    let mut out = [0u32; 3];
                    for (slot, (v, name)) in out.iter_mut().zip(vals.iter().zip(["TCP", "TCPFIN", "UDP"])) {
                        *slot = match v.parse::<u32>() {
                            Ok(n) if n <= MAX_TIMEOUT_S => n,
                            _ => {
                                return err(format!(
                                "--set: {name} timeout '{v}' is not a number of seconds in 0..={MAX_TIMEOUT_S} (0 = unchanged)"
                            ))
                            }
                        };
                    }
                    self.set = Some(out);
                }
                Cmd::SetExpire => {
                    self.expire = Some(match val.unwrap_or("") {
                        "on" | "1" | "yes" | "true" => true,
                        "off" | "0" | "no" | "false" => false,
                        v => return err(format!("--set-expire-nodest-conn: '{v}' is not on or off")),
                    })
                }
                _ => {}
            }
            return Ok(());
        }
        let dup = match o {
            Opt::Tcp | Opt::Udp => {
                if self.svc.is_some() {
                    return err("give one service: -t VIP:PORT or -u VIP:PORT, once");
                }
                false
            }
            Opt::Fwd(_) => {
                if self.fwd.is_some() {
                    return err("give one forwarding method: -g, -i, -m or -b");
                }
                false
            }
            Opt::Numeric | Opt::Json => false,
            Opt::ClientAddr | Opt::ProxyProtocol => {
                if self.client_addr.is_some() {
                    return err("give the client-address mode once: --client-addr or --proxy-protocol");
                }
                false
            }
            _ => self.given.contains(&o),
        };
        if dup {
            return Err(ParseError::GivenTwice(opt_name(o)));
        }
        self.given.push(o);
        let v = val.unwrap_or("");
        match o {
            Opt::Tcp => self.svc = Some((Proto::Tcp, parse_service_addr(v)?)),
            Opt::Udp => self.svc = Some((Proto::Udp, parse_service_addr(v)?)),
            Opt::Sched => self.sched = Some(v.parse()?),
            Opt::Real => self.real = Some(parse_real_addr(v)?),
            Opt::Fwd(m) => self.fwd = Some(m),
            Opt::Weight => self.weight = Some(parse_num(o, v, 65535)?),
            Opt::UThresh => self.u = Some(parse_num(o, v, u32::MAX)?),
            Opt::LThresh => self.l = Some(parse_num(o, v, u32::MAX)?),
            Opt::Persistent => {
                self.persistent = Some(match val {
                    None => DEFAULT_PERSISTENT_S,
                    Some(v) => match v.parse::<u32>() {
                        Ok(n) if (1..=Persistence::MAX_TIMEOUT_S).contains(&n) => n,
                        _ => {
                            return err(format!(
                                "{}: '{v}' is not a timeout in seconds (1..={})",
                                opt_name(o),
                                Persistence::MAX_TIMEOUT_S
                            ))
                        }
                    },
                })
            }
            Opt::Netmask => {
                let m: Ipv4Addr = v
                    .parse()
                    .map_err(|_| ParseError::Usage(format!("{}: '{v}' is not an IPv4 netmask", opt_name(o))))?;
                if !is_contiguous_netmask(m) {
                    return err(format!("{}: '{v}' is not a contiguous netmask", opt_name(o)));
                }
                self.netmask = Some(m);
            }
            Opt::Numeric => self.numeric = true,
            Opt::Json => self.json = true,
            Opt::Laddr => {
                self.laddr = Some(
                    v.parse()
                        .map_err(|_| ParseError::Usage(format!("{}: '{v}' is not an IPv4 address", opt_name(o))))?,
                )
            }
            // DPVS binds a laddr to a port; rvs answers ARP for laddrs on every port.
            Opt::Ifname => {}
            Opt::ClientAddr => {
                self.client_addr =
                    Some(v.parse().map_err(|source| ParseError::ClientAddr { opt: opt_name(o), source })?)
            }
            Opt::ProxyProtocol => {
                self.client_addr = Some(match v.to_ascii_lowercase().as_str() {
                    "v2" | "2" => ClientAddrMode::ProxyV2,
                    // DPVS without PROXY protocol still inserts TOA in FULLNAT.
                    "disable" | "none" | "off" => ClientAddrMode::Toa,
                    "v1" | "1" | "v1-insecure" | "v2-insecure" => {
                        return err(format!("--proxy-protocol {v} is not supported; use v2 (--client-addr proxy-v2)"))
                    }
                    _ => return err(format!("--proxy-protocol: '{v}' is not v2 or disable")),
                })
            }
            Opt::Timeout => self.timeout = true,
            Opt::Stats => self.stats = true,
            Opt::Rate => self.rate = true,
            Opt::Exact => self.exact = true,
            Opt::Connection => self.conns = true,
            Opt::Max => {
                self.max = Some(match v.parse::<u32>() {
                    Ok(n) if n >= 1 => n,
                    _ => return err(format!("--max: '{v}' is not a number of entries (1 or more)")),
                })
            }
            Opt::Cmd(_) => {}
        }
        Ok(())
    }
}

fn unsupported_short(c: char) -> Option<&'static str> {
    UNSUPPORTED.iter().find(|u| u.0 == Some(c)).map(|u| u.2)
}

/// Parse ipvsadm arguments (without the program name).
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let mut seen = Seen::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            if long.is_empty() {
                return err("unexpected '--'");
            }
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let Some(s) = OPTS.iter().find(|s| s.long == name) else {
                if let Some(u) = UNSUPPORTED.iter().find(|u| u.1 == name) {
                    return Err(ParseError::Unsupported(u.2));
                }
                return Err(ParseError::UnknownOption(format!("--{name}")));
            };
            let three;
            let val = match (s.arg, inline) {
                (Arg::No, Some(_)) => return Err(ParseError::TakesNoValue(name.to_string())),
                (Arg::No, None) => None,
                (Arg::Three, _) => {
                    let vals = match (inline, args.get(i..i + 3)) {
                        (None, Some(v)) => v,
                        _ => return err(format!("option --{name} needs three values: --{name} TCP TCPFIN UDP")),
                    };
                    i += 3;
                    three = vals.join(" ");
                    Some(three.as_str())
                }
                (_, Some(v)) => Some(v),
                (Arg::Required, None) => {
                    let Some(v) = args.get(i) else {
                        return Err(ParseError::NeedsValue(format!("--{name}")));
                    };
                    i += 1;
                    Some(*v)
                }
                (Arg::Optional, None) => optional_value(&args, &mut i),
            };
            seen.set(s.opt, val)?;
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            let chars: Vec<(usize, char)> = cluster.char_indices().collect();
            let mut k = 0;
            while k < chars.len() {
                let (pos, c) = chars[k];
                k += 1;
                let Some(s) = OPTS.iter().find(|s| s.short == Some(c)) else {
                    if let Some(m) = unsupported_short(c) {
                        return Err(ParseError::Unsupported(m));
                    }
                    return Err(ParseError::UnknownOption(format!("-{c}")));
                };
                let rest = &cluster[pos + c.len_utf8()..];
                let val = match s.arg {
                    // Only long options take three values.
                    Arg::No | Arg::Three => None,
                    Arg::Required if !rest.is_empty() => {
                        k = chars.len();
                        Some(rest)
                    }
                    Arg::Required => {
                        let Some(v) = args.get(i) else {
                            return Err(ParseError::NeedsValue(format!("-{c}")));
                        };
                        i += 1;
                        Some(*v)
                    }
                    Arg::Optional if !rest.is_empty() => {
                        k = chars.len();
                        Some(rest)
                    }
                    Arg::Optional => optional_value(&args, &mut i),
                };
                seen.set(s.opt, val)?;
            }
        } else {
            return Err(ParseError::UnexpectedArgument(a.to_string()));
        }
    }
    build(seen)
}

/// `-p [TIMEOUT]`: take the next argument only if it is a number.
fn optional_value<'a>(args: &[&'a str], i: &mut usize) -> Option<&'a str> {
    let v = args.get(*i)?;
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        *i += 1;
        Some(v)
    } else {
        None
    }
}

fn build(seen: Seen) -> Result<Command, ParseError> {
    // No command: ipvsadm lists.
    let cmd = seen.cmd.unwrap_or(Cmd::L);
    if cmd == Cmd::H {
        return Ok(Command::Help);
    }
    for &o in &seen.given {
        let ok = allowed_with(o);
        if !ok.contains(&cmd) {
            let names: Vec<String> = ok.iter().map(|c| short_cmd(*c)).collect();
            let hint = if seen.cmd.is_none() { " (no command was given)" } else { "" };
            return err(format!("option {} is only valid with {}{hint}", opt_name(o), join_or(&names)));
        }
    }
    if seen.timeout && seen.svc.is_some() {
        return err("--timeout lists the timeouts, not a service: drop -t/-u");
    }
    if cmd == Cmd::L {
        let views = [(seen.timeout, "--timeout"), (seen.stats, "--stats"), (seen.rate, "--rate"), (seen.conns, "-c")];
        let given: Vec<&str> = views.iter().filter(|v| v.0).map(|v| v.1).collect();
        if given.len() > 1 {
            return err(format!("give one listing: {} go not together", given.join(" and ")));
        }
        if seen.real.is_some() && !seen.conns {
            if seen.cmd.is_none() {
                return err("option -r (--real-server) is only valid with -a, -e, -d or -L -c (no command was given)");
            }
            return err("-r (--real-server) with -L filters the connection list: add -c");
        }
        if seen.max.is_some() && !seen.conns {
            return err("--max bounds the connection list: add -c");
        }
        if seen.exact && !(seen.stats || seen.rate) {
            return err("--exact goes with --stats or --rate");
        }
    }
    if seen.netmask.is_some() && seen.persistent.is_none() {
        return err(format!("{} needs -p (--persistent)", opt_name(Opt::Netmask)));
    }
    let need_svc = || {
        seen.svc.map(|(proto, vip)| ServiceKey { proto, vip }).ok_or_else(|| ParseError::NeedsService(cmd_name(cmd)))
    };
    let need_real = || seen.real.ok_or_else(|| ParseError::NeedsReal(cmd_name(cmd)));
    let service = |key| Service {
        key,
        sched: seen.sched.unwrap_or(DEFAULT_SCHED),
        persistence: seen
            .persistent
            .map(|timeout_s| Persistence { timeout_s, netmask: seen.netmask.unwrap_or(Ipv4Addr::BROADCAST) }),
        laddrs: Vec::new(),
        client_addr: seen.client_addr.unwrap_or_default(),
        reals: Vec::new(),
    };
    let need_laddr = || seen.laddr.ok_or_else(|| ParseError::NeedsLaddr(cmd_name(cmd)));
    let real = |addr| RealServer {
        addr,
        fwd: seen.fwd.unwrap_or(FwdMode::Dr),
        weight: seen.weight.unwrap_or(1),
        u_threshold: seen.u.unwrap_or(0),
        l_threshold: seen.l.unwrap_or(0),
    };
    Ok(match cmd {
        Cmd::A => Command::AddService(service(need_svc()?)),
        Cmd::E => Command::EditService(service(need_svc()?)),
        Cmd::D => Command::DelService(need_svc()?),
        Cmd::C => Command::Clear,
        Cmd::AddR => Command::AddReal { key: need_svc()?, real: real(need_real()?) },
        Cmd::EditR => Command::EditReal { key: need_svc()?, real: real(need_real()?) },
        Cmd::DelR => Command::DelReal { key: need_svc()?, addr: need_real()? },
        Cmd::L if seen.timeout => Command::GetTimeouts { json: seen.json },
        Cmd::L if seen.stats => Command::ListStats {
            key: seen.svc.map(|(proto, vip)| ServiceKey { proto, vip }),
            json: seen.json,
            exact: seen.exact,
        },
        Cmd::L if seen.rate => Command::ListRate {
            key: seen.svc.map(|(proto, vip)| ServiceKey { proto, vip }),
            json: seen.json,
            exact: seen.exact,
        },
        Cmd::L if seen.conns => Command::ListConns {
            key: seen.svc.map(|(proto, vip)| ServiceKey { proto, vip }),
            real: seen.real,
            max: seen.max.unwrap_or(DEFAULT_MAX_CONNS),
            json: seen.json,
        },
        Cmd::L => Command::List { key: seen.svc.map(|(proto, vip)| ServiceKey { proto, vip }), json: seen.json },
        Cmd::S => Command::Save,
        Cmd::R => Command::Restore,
        Cmd::V => Command::Version,
        Cmd::H => Command::Help,
        Cmd::AddL => Command::AddLaddr { key: need_svc()?, addr: need_laddr()? },
        Cmd::DelL => Command::DelLaddr { key: need_svc()?, addr: need_laddr()? },
        Cmd::GetL => Command::GetLaddr { key: seen.svc.map(|(proto, vip)| ServiceKey { proto, vip }), json: seen.json },
        Cmd::Set => {
            let [tcp, tcpfin, udp] = seen.set.unwrap_or_default();
            Command::SetTimeouts { tcp, tcpfin, udp }
        }
        Cmd::SetExpire => Command::SetExpireNodestConn(seen.expire.unwrap_or(false)),
        Cmd::GetExpire => Command::GetExpireNodestConn,
        Cmd::Z => Command::Zero(seen.svc.map(|(proto, vip)| ServiceKey { proto, vip })),
        Cmd::Reload => Command::Reload,
    })
}

/// `IP/LEN` of `addr` and `route` (an address without `/LEN` is a /32).
pub fn parse_prefix(s: &str) -> Result<(Ipv4Addr, u8), ParseError> {
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: Ipv4Addr = a.parse().map_err(|_| ParseError::Usage(format!("'{s}': '{a}' is not an IPv4 address")))?;
    let len = match l {
        None => 32,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= 32 => n,
            _ => return err(format!("'{s}': prefix length '{l}' is not in 0..=32")),
        },
    };
    Ok((addr, len))
}

/// Words after `addr`, `route` or `neigh` as `(verb, positional, [(keyword, value)], json)`:
/// keywords are `dev` and `via`, each at most once.
struct IpWords<'a> {
    verb: &'a str,
    positional: Vec<&'a str>,
    dev: Option<String>,
    via: Option<&'a str>,
    json: bool,
}

fn ip_words<'a>(what: &str, args: &[&'a str], usage: &str) -> Result<IpWords<'a>, ParseError> {
    let Some((&verb, rest)) = args.split_first() else {
        return err(usage.to_string());
    };
    let mut w = IpWords { verb, positional: Vec::new(), dev: None, via: None, json: false };
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i];
        i += 1;
        match a {
            "dev" | "via" => {
                let Some(v) = rest.get(i) else {
                    return err(format!("{what} {verb}: '{a}' needs a value; {usage}"));
                };
                i += 1;
                let slot_taken = if a == "dev" { w.dev.is_some() } else { w.via.is_some() };
                if slot_taken {
                    return err(format!("{what} {verb}: '{a}' given twice"));
                }
                if a == "dev" {
                    w.dev = Some((*v).to_string());
                } else {
                    w.via = Some(v);
                }
            }
            "--json" => w.json = true,
            _ if a.starts_with('-') => return err(format!("{what} {verb}: unknown option '{a}'; {usage}")),
            _ => w.positional.push(a),
        }
    }
    Ok(w)
}

/// `rvsadm addr add|del IP/LEN dev PORT`, `rvsadm addr show [dev PORT] [--json]`.
pub fn parse_addr_subcommand<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    const USE: &str = "usage: rvsadm addr add|del IP/LEN dev PORT, or rvsadm addr show [dev PORT] [--json]";
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let w = ip_words("addr", &args, USE)?;
    if w.via.is_some() {
        return err(format!("addr {}: 'via' belongs to routes; {USE}", w.verb));
    }
    match w.verb {
        "add" | "del" | "delete" => {
            if w.json {
                return err(format!("addr {}: --json is for show", w.verb));
            }
            let [p] = w.positional[..] else {
                return err(format!("addr {} needs one IP/LEN; {USE}", w.verb));
            };
            let (addr, len) = parse_prefix(p)?;
            let Some(dev) = w.dev else {
                return err(format!("addr {} needs the port: dev PORT", w.verb));
            };
            Ok(if w.verb == "add" { Command::AddrAdd { addr, len, dev } } else { Command::AddrDel { addr, len, dev } })
        }
        "show" | "list" => {
            if let Some(p) = w.positional.first() {
                return err(format!("addr show: unexpected argument '{p}'; {USE}"));
            }
            Ok(Command::AddrShow { dev: w.dev, json: w.json })
        }
        v => err(format!("unknown addr command '{v}'; {USE}")),
    }
}

/// `rvsadm route add PREFIX/LEN [via GW] dev PORT`, `route del PREFIX/LEN [via GW] [dev PORT]`,
/// `route show [--json]`. `default` is 0.0.0.0/0.
pub fn parse_route_subcommand<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    const USE: &str = "usage: rvsadm route add PREFIX/LEN [via GW] dev PORT, rvsadm route del PREFIX/LEN [via GW] [dev PORT], or rvsadm route show [--json]";
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let w = ip_words("route", &args, USE)?;
    let via = match w.via {
        None => None,
        Some(v) => Some(
            v.parse::<Ipv4Addr>()
                .map_err(|_| ParseError::Usage(format!("route {}: via '{v}' is not an IPv4 address", w.verb)))?,
        ),
    };
    match w.verb {
        "add" | "del" | "delete" => {
            if w.json {
                return err(format!("route {}: --json is for show", w.verb));
            }
            let [p] = w.positional[..] else {
                return err(format!("route {} needs one PREFIX/LEN; {USE}", w.verb));
            };
            let (prefix, len) = if p == "default" { (Ipv4Addr::UNSPECIFIED, 0) } else { parse_prefix(p)? };
            if w.verb == "add" {
                let Some(dev) = w.dev else {
                    return err("route add needs the port: dev PORT");
                };
                Ok(Command::RouteAdd { prefix, len, via, dev })
            } else {
                Ok(Command::RouteDel { prefix, len, via, dev: w.dev })
            }
        }
        "show" | "list" => {
            if let Some(p) = w.positional.first() {
                return err(format!("route show: unexpected argument '{p}'; {USE}"));
            }
            if w.dev.is_some() || via.is_some() {
                return err(format!("route show takes no dev/via; {USE}"));
            }
            Ok(Command::RouteShow { json: w.json })
        }
        v => err(format!("unknown route command '{v}'; {USE}")),
    }
}

/// `rvsadm neigh show [dev PORT] [--json]`, `rvsadm neigh flush [dev PORT]`.
pub fn parse_neigh_subcommand<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    const USE: &str = "usage: rvsadm neigh show [dev PORT] [--json], or rvsadm neigh flush [dev PORT]";
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let w = ip_words("neigh", &args, USE)?;
    if let Some(p) = w.positional.first() {
        return err(format!("neigh {}: unexpected argument '{p}'; {USE}", w.verb));
    }
    if w.via.is_some() {
        return err(format!("neigh {}: 'via' belongs to routes; {USE}", w.verb));
    }
    match w.verb {
        "show" | "list" => Ok(Command::NeighShow { dev: w.dev, json: w.json }),
        "flush" if !w.json => Ok(Command::NeighFlush { dev: w.dev }),
        "flush" => err("neigh flush: --json is for show"),
        v => err(format!("unknown neigh command '{v}'; {USE}")),
    }
}

/// `rvsadm laddr add|del -t|-u VIP:PORT LIP` and `rvsadm laddr show [-t|-u VIP:PORT] [--json]`
/// (the arguments after `laddr`): the same commands as DPVS's `--add-laddr`, `--del-laddr` and
/// `--get-laddr`.
pub fn parse_laddr_subcommand<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    const USE: &str = "usage: rvsadm laddr add|del -t|-u VIP:PORT LIP, or rvsadm laddr show [-t|-u VIP:PORT] [--json]";
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let Some((&verb, rest)) = args.split_first() else {
        return err(USE);
    };
    let mut svc: Option<ServiceKey> = None;
    let mut lip: Option<IpAddr> = None;
    let mut json = false;
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i];
        i += 1;
        let proto = match a {
            "-t" | "--tcp-service" => Some(Proto::Tcp),
            "-u" | "--udp-service" => Some(Proto::Udp),
            _ => None,
        };
        if let Some(proto) = proto {
            let Some(v) = rest.get(i) else {
                return Err(ParseError::NeedsValue(a.to_string()));
            };
            i += 1;
            if svc.is_some() {
                return err("give one service: -t VIP:PORT or -u VIP:PORT, once");
            }
            svc = Some(ServiceKey { proto, vip: parse_service_addr(v)? });
        } else if a == "--json" && verb == "show" {
            json = true;
        } else if a.starts_with('-') {
            return err(format!("unknown option '{a}' for laddr {verb}; {USE}"));
        } else if verb != "show" && lip.is_none() {
            lip = Some(a.parse().map_err(|_| ParseError::Usage(format!("'{a}' is not an IPv4 address")))?);
        } else {
            return err(format!("unexpected argument '{a}'; {USE}"));
        }
    }
    let need_svc =
        || svc.ok_or_else(|| ParseError::Usage(format!("laddr {verb} needs a service: -t VIP:PORT or -u VIP:PORT")));
    let need_lip = || lip.ok_or_else(|| ParseError::Usage(format!("laddr {verb} needs a local address (LIP)")));
    match verb {
        "add" => Ok(Command::AddLaddr { key: need_svc()?, addr: need_lip()? }),
        "del" | "delete" => Ok(Command::DelLaddr { key: need_svc()?, addr: need_lip()? }),
        "show" | "list" => Ok(Command::GetLaddr { key: svc, json }),
        _ => err(format!("unknown laddr command '{verb}'; {USE}")),
    }
}

/// The ipvsadm options that recreate `svc` (what `-S` prints, one command per line).
pub fn save_lines(svc: &Service) -> Vec<String> {
    let opt = match svc.key.proto {
        Proto::Tcp => "-t",
        Proto::Udp => "-u",
    };
    let mut head = format!("-A {opt} {} -s {}", svc.key.vip, svc.sched);
    if let Some(p) = &svc.persistence {
        head.push_str(&format!(" -p {}", p.timeout_s));
        if p.netmask != Ipv4Addr::BROADCAST {
            head.push_str(&format!(" -M {}", p.netmask));
        }
    }
    if svc.client_addr != ClientAddrMode::default() {
        head.push_str(&format!(" --client-addr {}", svc.client_addr));
    }
    let mut out = vec![head];
    for l in &svc.laddrs {
        out.push(format!("--add-laddr {opt} {} -z {l}", svc.key.vip));
    }
    for r in &svc.reals {
        let fwd = match r.fwd {
            FwdMode::Dr => "-g",
            FwdMode::Tun => "-i",
            FwdMode::Nat => "-m",
            FwdMode::FullNat => "-b",
        };
        let mut l = format!("-a {opt} {} -r {} {fwd} -w {}", svc.key.vip, r.addr, r.weight);
        if r.u_threshold > 0 {
            l.push_str(&format!(" -x {}", r.u_threshold));
        }
        if r.l_threshold > 0 {
            l.push_str(&format!(" -y {}", r.l_threshold));
        }
        out.push(l);
    }
    out
}

/// Save lines of a whole table, in service order (what `rvsadm -S` prints).
pub fn save_table(services: &[Service]) -> Vec<String> {
    services.iter().flat_map(save_lines).collect()
}

/// Usage text of the ipvsadm-compatible part of rvsadm.
pub const USAGE: &str = "\
Usage:
  rvsadm [--socket PATH] -A|-E -t|-u VIP:PORT [-s SCHEDULER] [-p [TIMEOUT] [-M NETMASK]]
                         [--client-addr toa|proxy-v2|none]
  rvsadm [--socket PATH] -D -t|-u VIP:PORT
  rvsadm [--socket PATH] -C
  rvsadm [--socket PATH] -a|-e -t|-u VIP:PORT -r RIP[:PORT] [-g|-i|-m|-b] [-w WEIGHT] [-x UTHRESH] [-y LTHRESH]
  rvsadm [--socket PATH] -d -t|-u VIP:PORT -r RIP[:PORT]
  rvsadm [--socket PATH] -L|-l [-n] [--json] [-t|-u VIP:PORT]
  rvsadm [--socket PATH] -L --timeout [--json]
  rvsadm [--socket PATH] -L|-l [-n] --stats|--rate [--exact] [--json] [-t|-u VIP:PORT]
  rvsadm [--socket PATH] -L|-l [-n] -c [-t|-u VIP:PORT] [-r RIP[:PORT]] [--max N] [--json]
  rvsadm [--socket PATH] -Z [-t|-u VIP:PORT]
  rvsadm [--socket PATH] --reload
  rvsadm [--socket PATH] --set TCP TCPFIN UDP
  rvsadm [--socket PATH] --set-expire-nodest-conn on|off
  rvsadm [--socket PATH] --get-expire-nodest-conn
  rvsadm [--socket PATH] -P|-Q -t|-u VIP:PORT -z LIP [-F IFNAME]   (--add-laddr, --del-laddr)
  rvsadm [--socket PATH] -G [-t|-u VIP:PORT] [--json]              (--get-laddr)
  rvsadm [--socket PATH] laddr add|del -t|-u VIP:PORT LIP
  rvsadm [--socket PATH] laddr show [-t|-u VIP:PORT] [--json]
  rvsadm [--socket PATH] -S [-n]        print the table as rvsadm commands
  rvsadm [--socket PATH] -R             read rvsadm commands (as -S prints them) from stdin
  rvsadm [--socket PATH] link show [--json]
  rvsadm [--socket PATH] addr add|del IP/LEN dev PORT
  rvsadm [--socket PATH] addr show [dev PORT] [--json]
  rvsadm [--socket PATH] route add PREFIX/LEN|default [via GW] dev PORT
  rvsadm [--socket PATH] route del PREFIX/LEN|default [via GW] [dev PORT]
  rvsadm [--socket PATH] route show [--json]
  rvsadm [--socket PATH] neigh show [dev PORT] [--json]
  rvsadm [--socket PATH] neigh flush [dev PORT]
  rvsadm [--socket PATH] version
  rvsadm -h|--help

Commands:
  --add-service     -A   add a virtual service
  --edit-service    -E   edit a virtual service (scheduler, persistence, client-addr; real
                         servers and local addresses are kept; unset options take defaults)
  --delete-service  -D   delete a virtual service
  --clear           -C   delete all virtual services
  --add-server      -a   add a real server to a service
  --edit-server     -e   edit a real server (unset options take their defaults, as in ipvsadm)
  --delete-server   -d   delete a real server
  --list            -L|-l  list the services (the default with no command); FULLNAT local
                         addresses show as '  -> laddr LIP' lines after the real servers
  --save            -S   print the services as commands (with --add-laddr lines)
  --restore         -R   apply commands read from stdin
  --set TCP TCPFIN UDP   session timeouts in seconds (established, FIN_WAIT, UDP); 0 = unchanged
  --set-expire-nodest-conn on|off
                         on: drop the sessions of a deleted real server at once (IPVS's
                         expire_nodest_conn); off (default): they run until they time out
  --get-expire-nodest-conn  print that setting
  --zero            -Z   zero the statistics (--stats; rates are unaffected) of one service or all
  --reload               make rvsd re-read its configuration file (services, timeouts); the
                         addresses and routes changed with addr/route stay as they are
  --add-laddr       -P   add a FULLNAT local address (DPVS)
  --del-laddr       -Q   delete a FULLNAT local address (DPVS)
  --get-laddr       -G   list FULLNAT local addresses (DPVS)

Options:
  --tcp-service  -t VIP:PORT    TCP service
  --udp-service  -u VIP:PORT    UDP service
  --scheduler    -s SCHEDULER   rr | wrr | lc | wlc | sh | dh | fo | mh (default wrr)
  --persistent   -p [TIMEOUT]   persistent service, 1..=31536000 s (default 300)
  --netmask      -M NETMASK     persistence granularity (with -p; default 255.255.255.255)
  --client-addr MODE            FULLNAT: how the real server learns the client address:
                                toa (TCP option, default), proxy-v2 (PROXY protocol v2), none
  --proxy-protocol v2|disable   DPVS spelling: v2 = --client-addr proxy-v2, disable = toa
  --real-server  -r RIP[:PORT]  real server; no port = the service port
  --gatewaying   -g             direct routing (default); RS port = service port
  --ipip         -i             IP-in-IP tunnelling; RS port = service port
  --masquerading -m             NAT; the RS port may differ
  --fullnat      -b             full NAT (DPVS); the RS port may differ; needs local addresses
  --weight       -w WEIGHT      0..=65535, default 1; 0 drains the server
  --u-threshold  -x UTHRESH     upper connection threshold (0 = none)
  --l-threshold  -y LTHRESH     lower connection threshold (0 = none)
  --laddr        -z LIP         FULLNAT local address (with -P/-Q)
  --ifname       -F IFNAME      accepted for DPVS compatibility and ignored: rvs answers ARP
                                for local addresses on every port
  --timeout                     with -L: print 'Timeout (tcp tcpfin udp): T F U'
  --stats                       with -L: connections, packets and bytes per service and real
                                server since start or the last -Z (in = client to real server,
                                out = real server to client; out is 0 for DR and TUN)
  --rate                        with -L: the same per second, over the time since the previous
                                --rate (at least 1 s: rvsadm waits; a first call or one after
                                more than 60 s samples over 1 s)
  --exact                       with --stats/--rate: exact numbers, not K/M/G
  --connection   -c             with -L: list sessions ('IPVS connection entries'; a 'local'
                                column is added when FULLNAT sessions are shown); filter with
                                -t/-u VIP:PORT and -r RIP[:PORT] (no port = any)
  --max N                       with -L -c: list at most N sessions (default 1000); how many
                                were left out is said at the end
  --numeric      -n             numeric output (always; rvs never resolves names)
  --json                        JSON output for -L (with --stats, --rate, -c, --timeout), -G
                                and link/addr/route/neigh show
  --socket PATH                 rvsd control socket (default $RVSADM_SOCKET or /run/rvs/rvsd.sock)
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        let args: Vec<&str> = s.split_whitespace().collect();
        parse(&args)
    }
    fn ok(s: &str) -> Command {
        p(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }
    fn bad(s: &str, want: &str) {
        match p(s) {
            Ok(c) => panic!("{s:?} parsed as {c:?}, expected an error containing {want:?}"),
            Err(e) => assert!(e.to_string().contains(want), "{s:?}: {:?} lacks {want:?}", e.to_string()),
        }
    }
    fn key(proto: Proto, s: &str) -> ServiceKey {
        ServiceKey { proto, vip: s.parse().unwrap() }
    }
    fn tk() -> ServiceKey {
        key(Proto::Tcp, "203.0.113.100:80")
    }
    fn real(addr: &str, fwd: FwdMode, weight: u32) -> RealServer {
        RealServer { addr: addr.parse().unwrap(), fwd, weight, u_threshold: 0, l_threshold: 0 }
    }

    #[test]
    fn add_service() {
        let want = Command::AddService(Service {
            key: tk(),
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: vec![],
        });
        assert_eq!(ok("-A -t 203.0.113.100:80 -s rr"), want);
        assert_eq!(ok("-s rr -t 203.0.113.100:80 -A"), want, "any order");
        assert_eq!(ok("--add-service --tcp-service 203.0.113.100:80 --scheduler rr"), want);
        assert_eq!(ok("--add-service --tcp-service=203.0.113.100:80 --scheduler=rr"), want);
        assert_eq!(ok("-At 203.0.113.100:80 -srr"), want, "clustered and attached values");
        assert_eq!(ok("-At203.0.113.100:80 -s rr"), want);
        let Command::AddService(s) = ok("-A -u 203.0.113.100:53") else { panic!() };
        assert_eq!((s.key, s.sched), (key(Proto::Udp, "203.0.113.100:53"), DEFAULT_SCHED));
        assert_eq!(ok("-A -u 203.0.113.100:53").to_request(), Some(Request::AddService { service: s }));
    }

    #[test]
    fn persistence_options() {
        let Command::AddService(s) = ok("-A -t 203.0.113.100:80 -p") else { panic!() };
        assert_eq!(s.persistence, Some(Persistence { timeout_s: 300, netmask: Ipv4Addr::BROADCAST }));
        let Command::AddService(s) = ok("-A -t 203.0.113.100:80 -p 600 -M 255.255.255.0") else { panic!() };
        assert_eq!(s.persistence, Some(Persistence { timeout_s: 600, netmask: Ipv4Addr::new(255, 255, 255, 0) }));
        let Command::EditService(s) = ok("-E -t 203.0.113.100:80 -p -s rr") else { panic!() };
        assert_eq!((s.persistence.unwrap().timeout_s, s.sched), (300, SchedKind::Rr), "-p followed by an option");
        let Command::AddService(s) = ok("-A -t 203.0.113.100:80 -p900") else { panic!() };
        assert_eq!(s.persistence.unwrap().timeout_s, 900);
        let Command::AddService(s) = ok("-A -t 203.0.113.100:80 --persistent=60") else { panic!() };
        assert_eq!(s.persistence.unwrap().timeout_s, 60);
        bad("-A -t 203.0.113.100:80 -M 255.255.255.0", "needs -p");
        bad("-A -t 203.0.113.100:80 -p 10 -M 255.0.255.0", "not a contiguous netmask");
        bad("-A -t 203.0.113.100:80 -p 10 -M x", "'x' is not an IPv4 netmask");
        bad("-A -t 203.0.113.100:80 -p0", "'0' is not a timeout");
        bad(
            "-A -t 203.0.113.100:80 -p 31536001",
            "-p (--persistent): '31536001' is not a timeout in seconds (1..=31536000)",
        );
        let Command::AddService(s) = ok("-A -t 203.0.113.100:80 -p 31536000 -M 0.0.0.0") else { panic!() };
        assert_eq!(s.persistence, Some(Persistence { timeout_s: 31_536_000, netmask: Ipv4Addr::UNSPECIFIED }));
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -p 5", "option -p (--persistent) is only valid with -A or -E");
    }

    #[test]
    fn client_addr_options() {
        let mode = |s: &str| match ok(s) {
            Command::AddService(s) | Command::EditService(s) => s.client_addr,
            c => panic!("{c:?}"),
        };
        assert_eq!(mode("-A -t 203.0.113.100:80"), ClientAddrMode::Toa, "default");
        assert_eq!(mode("-A -t 203.0.113.100:80 --client-addr toa"), ClientAddrMode::Toa);
        assert_eq!(mode("-A -t 203.0.113.100:80 --client-addr proxy-v2"), ClientAddrMode::ProxyV2);
        assert_eq!(mode("-E -t 203.0.113.100:80 --client-addr=none"), ClientAddrMode::None);
        assert_eq!(mode("-A -t 203.0.113.100:80 --proxy-protocol v2"), ClientAddrMode::ProxyV2);
        assert_eq!(mode("-A -t 203.0.113.100:80 --proxy-protocol disable"), ClientAddrMode::Toa);
        bad(
            "-A -t 203.0.113.100:80 --client-addr carrier-pigeon",
            "--client-addr: unknown client-address mode 'carrier-pigeon' (expected toa, proxy-v2 or none)",
        );
        bad("-A -t 203.0.113.100:80 --proxy-protocol v1", "--proxy-protocol v1 is not supported; use v2");
        bad("-A -t 203.0.113.100:80 --proxy-protocol v3", "--proxy-protocol: 'v3' is not v2 or disable");
        bad("-A -t 203.0.113.100:80 --client-addr toa --proxy-protocol v2", "give the client-address mode once");
        bad(
            "-a -t 203.0.113.100:80 -r 203.0.113.11 --client-addr toa",
            "option --client-addr is only valid with -A or -E",
        );
    }

    #[test]
    fn laddr_commands() {
        let lip: IpAddr = "203.0.113.3".parse().unwrap();
        let add = Command::AddLaddr { key: tk(), addr: lip };
        assert_eq!(ok("--add-laddr -t 203.0.113.100:80 -z 203.0.113.3"), add);
        assert_eq!(ok("--add-laddr -z 203.0.113.3 -t 203.0.113.100:80 -F dpdk0"), add, "DPVS's order and -F");
        assert_eq!(ok("-P -t 203.0.113.100:80 --laddr=203.0.113.3 --ifname dpdk0"), add);
        assert_eq!(ok("-Pt 203.0.113.100:80 -z203.0.113.3"), add, "clustered");
        assert_eq!(add.to_request(), Some(Request::AddLaddr { key: tk(), addr: lip }));
        let del = ok("-Q -t 203.0.113.100:80 -z 203.0.113.3");
        assert_eq!(del, Command::DelLaddr { key: tk(), addr: lip });
        assert_eq!(ok("--del-laddr -t 203.0.113.100:80 -z 203.0.113.3"), del);
        assert_eq!(del.to_request(), Some(Request::DelLaddr { key: tk(), addr: lip }));
        assert_eq!(ok("-G"), Command::GetLaddr { key: None, json: false });
        assert_eq!(ok("--get-laddr -t 203.0.113.100:80 -n --json"), Command::GetLaddr { key: Some(tk()), json: true });
        assert_eq!(ok("-G").to_request(), Some(Request::GetLaddr { key: None }));
        let u = ok("--add-laddr -u 203.0.113.100:53 -z 203.0.113.3");
        assert_eq!(u, Command::AddLaddr { key: key(Proto::Udp, "203.0.113.100:53"), addr: lip });

        bad("--add-laddr -t 203.0.113.100:80", "-P (--add-laddr) needs a local address: -z LIP");
        bad("-Q -t 203.0.113.100:80", "-Q (--del-laddr) needs a local address: -z LIP");
        bad("--add-laddr -z 203.0.113.3", "-P (--add-laddr) needs a service: -t VIP:PORT or -u VIP:PORT");
        bad("--add-laddr -t 203.0.113.100:80 -z lip0", "-z (--laddr): 'lip0' is not an IPv4 address");
        bad("--add-laddr -t 203.0.113.100:80 -z 203.0.113.3 -z 203.0.113.4", "option -z (--laddr) given twice");
        bad("-A -t 203.0.113.100:80 -z 203.0.113.3", "option -z (--laddr) is only valid with -P or -Q");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -F dpdk0", "option -F (--ifname) is only valid with -P or -Q");
        bad("-G --timeout", "option --timeout is only valid with -L");
        bad("-P -A", "only one command may be given, not both -P and -A");
    }

    #[test]
    fn laddr_subcommand() {
        let p = |s: &str| parse_laddr_subcommand(&s.split_whitespace().collect::<Vec<_>>());
        let lip: IpAddr = "203.0.113.3".parse().unwrap();
        assert_eq!(p("add -t 203.0.113.100:80 203.0.113.3"), Ok(Command::AddLaddr { key: tk(), addr: lip }));
        assert_eq!(p("add 203.0.113.3 -t 203.0.113.100:80"), Ok(Command::AddLaddr { key: tk(), addr: lip }));
        assert_eq!(p("del -t 203.0.113.100:80 203.0.113.3"), Ok(Command::DelLaddr { key: tk(), addr: lip }));
        assert_eq!(
            p("del -u 203.0.113.100:53 203.0.113.3"),
            Ok(Command::DelLaddr { key: key(Proto::Udp, "203.0.113.100:53"), addr: lip })
        );
        assert_eq!(p("show"), Ok(Command::GetLaddr { key: None, json: false }));
        assert_eq!(p("show -t 203.0.113.100:80 --json"), Ok(Command::GetLaddr { key: Some(tk()), json: true }));
        let e = |s: &str, want: &str| {
            let m = p(s).expect_err(s).to_string();
            assert!(m.contains(want), "{s:?}: {m:?} lacks {want:?}");
        };
        e("", "usage: rvsadm laddr add|del");
        e("add -t 203.0.113.100:80", "laddr add needs a local address (LIP)");
        e("add 203.0.113.3", "laddr add needs a service");
        e("add -t 203.0.113.100:80 203.0.113.3 203.0.113.4", "unexpected argument '203.0.113.4'");
        e("add -t 203.0.113.100:80 lip", "'lip' is not an IPv4 address");
        e("add -t 203.0.113.100 203.0.113.3", "'203.0.113.100' has no port");
        e("add -t", "option -t needs a value");
        e("add -t 203.0.113.100:80 -u 203.0.113.100:53 203.0.113.3", "give one service");
        e("show 203.0.113.3", "unexpected argument '203.0.113.3'");
        e("add --json -t 203.0.113.100:80 203.0.113.3", "unknown option '--json' for laddr add");
        e("flush", "unknown laddr command 'flush'");
    }

    #[test]
    fn timeouts_and_tunables() {
        assert_eq!(ok("--set 900 120 300"), Command::SetTimeouts { tcp: 900, tcpfin: 120, udp: 300 });
        assert_eq!(ok("--set 0 60 0").to_request(), Some(Request::SetTimeouts { tcp: 0, tcpfin: 60, udp: 0 }));
        assert_eq!(ok("-L --timeout"), Command::GetTimeouts { json: false });
        assert_eq!(ok("-L -n --timeout --json"), Command::GetTimeouts { json: true });
        assert_eq!(ok("--timeout"), Command::GetTimeouts { json: false }, "no command = -L");
        assert_eq!(ok("-L --timeout").to_request(), Some(Request::GetTimeouts));
        assert_eq!(ok("--set-expire-nodest-conn on"), Command::SetExpireNodestConn(true));
        assert_eq!(ok("--set-expire-nodest-conn=off"), Command::SetExpireNodestConn(false));
        assert_eq!(ok("--set-expire-nodest-conn 1").to_request(), Some(Request::SetExpireNodestConn { enabled: true }));
        assert_eq!(ok("--get-expire-nodest-conn"), Command::GetExpireNodestConn);
        assert_eq!(ok("--get-expire-nodest-conn").to_request(), Some(Request::GetExpireNodestConn));

        bad("--set 900 120", "option --set needs three values: --set TCP TCPFIN UDP");
        bad("--set=900", "option --set needs three values");
        bad("--set 900 x 300", "--set: TCPFIN timeout 'x' is not a number of seconds in 0..=31536000 (0 = unchanged)");
        bad("--set 900 120 31536001", "--set: UDP timeout '31536001'");
        bad("--set 1 2 3 4", "unexpected argument '4'");
        bad("--set 1 2 3 -t 203.0.113.100:80", "option -t (--tcp-service) is only valid with");
        bad("--set 1 2 3 -A", "only one command may be given, not both --set and -A");
        bad("-L --timeout -t 203.0.113.100:80", "--timeout lists the timeouts, not a service");
        bad("--set-expire-nodest-conn maybe", "--set-expire-nodest-conn: 'maybe' is not on or off");
        bad("--set-expire-nodest-conn", "option --set-expire-nodest-conn needs a value");
    }

    /// Apply a parsed command to a table the way rvsd does.
    fn apply(t: &mut rvs_config::ServiceTable, c: Command) -> Result<(), rvs_config::ModelError> {
        match c {
            Command::AddService(s) => t.add_service(s),
            Command::EditService(s) => t.edit_service(s),
            Command::DelService(k) => t.del_service(&k).map(drop),
            Command::AddReal { key, real } => t.add_real(&key, real),
            Command::EditReal { key, real } => t.edit_real(&key, real),
            Command::DelReal { key, addr } => t.del_real(&key, addr).map(drop),
            Command::AddLaddr { key, addr } => t.add_laddr(&key, addr),
            Command::DelLaddr { key, addr } => t.del_laddr(&key, addr),
            Command::Clear => {
                t.clear();
                Ok(())
            }
            c => panic!("not a table edit: {c:?}"),
        }
    }

    #[test]
    fn save_restore_round_trip_of_a_whole_table() {
        use rvs_config::ServiceTable;
        let r = |addr: &str, fwd, weight, u, l| RealServer {
            addr: addr.parse().unwrap(),
            fwd,
            weight,
            u_threshold: u,
            l_threshold: l,
        };
        let services = vec![
            Service {
                key: tk(),
                sched: SchedKind::Mh,
                persistence: Some(Persistence { timeout_s: 600, netmask: Ipv4Addr::new(255, 255, 255, 0) }),
                laddrs: vec!["203.0.113.3".parse().unwrap(), "203.0.113.4".parse().unwrap()],
                client_addr: ClientAddrMode::ProxyV2,
                reals: vec![
                    r("198.51.100.11:8080", FwdMode::FullNat, 3, 1000, 500),
                    r("198.51.100.12:8081", FwdMode::Nat, 0, 0, 7),
                    r("198.51.100.13:80", FwdMode::Tun, 65535, 1, 0),
                    r("198.51.100.14:80", FwdMode::Dr, 1, 0, 0),
                ],
            },
            Service {
                key: key(Proto::Udp, "203.0.113.100:53"),
                sched: SchedKind::Sh,
                persistence: Some(Persistence::default_ipvsadm()),
                laddrs: vec!["203.0.113.3".parse().unwrap()],
                client_addr: ClientAddrMode::None,
                reals: vec![r("198.51.100.21:5353", FwdMode::FullNat, 1, 0, 0)],
            },
            Service {
                key: key(Proto::Tcp, "203.0.113.101:443"),
                sched: SchedKind::Wlc,
                persistence: None,
                laddrs: vec![],
                client_addr: ClientAddrMode::Toa,
                reals: vec![],
            },
        ];
        let table = ServiceTable::from_services(services).unwrap();
        let lines = save_table(&table.to_services());
        let mut restored = ServiceTable::new();
        for l in &lines {
            let words: Vec<&str> = l.split_whitespace().collect();
            let c = parse(&words).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            apply(&mut restored, c).unwrap_or_else(|e| panic!("{l:?}: {e}"));
        }
        assert_eq!(restored, table, "{lines:#?}");
        // And saving the restored table prints the same lines.
        assert_eq!(save_table(&restored.to_services()), lines);
    }

    #[test]
    fn other_service_commands() {
        assert_eq!(ok("-D -t 203.0.113.100:80"), Command::DelService(tk()));
        assert_eq!(ok("--delete-service -t 203.0.113.100:80").to_request(), Some(Request::DelService { key: tk() }));
        assert_eq!(ok("-C"), Command::Clear);
        assert_eq!(ok("--clear").to_request(), Some(Request::Clear));
        let Command::EditService(s) = ok("-E -t 203.0.113.100:80 -s wrr") else { panic!() };
        assert_eq!(s.sched, SchedKind::Wrr);
        for name in ["rr", "wrr", "lc", "wlc", "sh", "dh", "fo", "mh"] {
            let Command::AddService(s) = ok(&format!("-A -t 203.0.113.100:80 -s {name}")) else { panic!() };
            assert_eq!(s.sched.name(), name);
        }
        bad("-A -t 203.0.113.100:80 -s fastest", "unknown scheduler 'fastest'");
    }

    #[test]
    fn real_server_commands() {
        assert_eq!(
            ok("-a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 3"),
            Command::AddReal { key: tk(), real: real("203.0.113.11:80", FwdMode::Dr, 3) }
        );
        assert_eq!(
            ok("-a -t 203.0.113.100:80 -r 203.0.113.11"),
            Command::AddReal { key: tk(), real: real("203.0.113.11:0", FwdMode::Dr, 1) },
            "defaults: -g, weight 1, port = service port (0)"
        );
        assert_eq!(
            ok("--add-server --real-server=203.0.113.11:80 --masquerading --weight=0 --tcp-service 203.0.113.100:80"),
            Command::AddReal { key: tk(), real: real("203.0.113.11:80", FwdMode::Nat, 0) }
        );
        for (flag, m) in [
            ("-g", FwdMode::Dr),
            ("-i", FwdMode::Tun),
            ("-m", FwdMode::Nat),
            ("-b", FwdMode::FullNat),
            ("--ipip", FwdMode::Tun),
            ("--fullnat", FwdMode::FullNat),
            ("--gatewaying", FwdMode::Dr),
        ] {
            let Command::EditReal { real, .. } = ok(&format!("-e -t 203.0.113.100:80 -r 203.0.113.11 {flag}")) else {
                panic!()
            };
            assert_eq!(real.fwd, m, "{flag}");
        }
        let Command::EditReal { real: r, .. } = ok("-e -t 203.0.113.100:80 -r 203.0.113.11:80 -x 100 -y 50 -w 65535")
        else {
            panic!()
        };
        assert_eq!((r.u_threshold, r.l_threshold, r.weight), (100, 50, 65535));
        let Command::AddReal { real: r, .. } = ok("-at 203.0.113.100:80 -r203.0.113.11:80 -gw5") else { panic!() };
        assert_eq!((r.fwd, r.weight), (FwdMode::Dr, 5), "clustered -gw5");
        assert_eq!(
            ok("-d -t 203.0.113.100:80 -r 203.0.113.11:80"),
            Command::DelReal { key: tk(), addr: "203.0.113.11:80".parse().unwrap() }
        );
        assert_eq!(
            ok("-d -r 203.0.113.11 -t 203.0.113.100:80").to_request(),
            Some(Request::DelReal { key: tk(), addr: "203.0.113.11:0".parse().unwrap() })
        );
        let c = ok("-e -t 203.0.113.100:80 -r 203.0.113.11:80 -w 2");
        assert_eq!(
            c.to_request(),
            Some(Request::EditReal { key: tk(), real: real("203.0.113.11:80", FwdMode::Dr, 2) })
        );
        let c = ok("-a -u 203.0.113.100:53 -r 203.0.113.11:53");
        assert_eq!(
            c.to_request(),
            Some(Request::AddReal {
                key: key(Proto::Udp, "203.0.113.100:53"),
                real: real("203.0.113.11:53", FwdMode::Dr, 1)
            })
        );
    }

    #[test]
    fn list_and_misc() {
        assert_eq!(ok("-L -n"), Command::List { key: None, json: false });
        assert_eq!(ok("-Ln"), Command::List { key: None, json: false });
        assert_eq!(ok("-nL"), Command::List { key: None, json: false });
        assert_eq!(ok("-ln"), Command::List { key: None, json: false });
        assert_eq!(ok("--list --numeric --json"), Command::List { key: None, json: true });
        assert_eq!(ok("-L -n -t 203.0.113.100:80"), Command::List { key: Some(tk()), json: false });
        assert_eq!(ok(""), Command::List { key: None, json: false }, "no arguments lists, as ipvsadm");
        assert_eq!(ok("-n"), Command::List { key: None, json: false });
        assert_eq!(ok("-L -n").to_request(), Some(Request::List { key: None }));
        assert_eq!(ok("-S -n"), Command::Save);
        assert_eq!(ok("-S").to_request(), Some(Request::List { key: None }));
        assert_eq!(ok("-R"), Command::Restore);
        assert_eq!(ok("-R").to_request(), None);
        assert_eq!(ok("-h"), Command::Help);
        assert_eq!(ok("--help"), Command::Help);
        assert_eq!(ok("-v").to_request(), Some(Request::Version));
    }

    #[test]
    fn errors() {
        bad("-A", "-A (--add-service) needs a service: -t VIP:PORT or -u VIP:PORT");
        bad("-a -r 203.0.113.11", "-a (--add-server) needs a service");
        bad("-a -t 203.0.113.100:80", "-a (--add-server) needs a real server: -r RIP[:PORT]");
        bad("-d -t 203.0.113.100:80", "-d (--delete-server) needs a real server");
        bad("-A -t 203.0.113.100:80 -u 203.0.113.100:80", "give one service");
        bad("-A -t 203.0.113.100:80 -t 203.0.113.101:80", "give one service");
        bad("-A -t 203.0.113.300:80", "'203.0.113.300:80' is not a valid IPv4 address:port");
        bad("-A -t 203.0.113.100", "'203.0.113.100' has no port");
        bad("-A -t 203.0.113.100:http", "'203.0.113.100:http' is not a valid IPv4 address:port");
        bad("-A -t 203.0.113.100:70000", "is not a valid IPv4 address:port");
        bad("-a -t 203.0.113.100:80 -r rs1.example", "'rs1.example' is not a valid IPv4 address[:port]");
        bad(
            "-t 203.0.113.100:80 -r 203.0.113.11",
            "option -r (--real-server) is only valid with -a, -e, -d or -L -c (no command was given)",
        );
        bad("-A -t 203.0.113.100:80 -r 203.0.113.11", "option -r (--real-server) is only valid with -a, -e, -d or -L");
        bad("-A -t 203.0.113.100:80 -w 3", "option -w (--weight) is only valid with -a or -e");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -s rr", "option -s (--scheduler) is only valid with -A or -E");
        bad("-C -t 203.0.113.100:80", "option -t (--tcp-service) is only valid with");
        bad("-A -n -t 203.0.113.100:80", "option -n (--numeric) is only valid with -L, -S or -G");
        bad("-D --json -t 203.0.113.100:80", "option --json is only valid with -L");
        bad("-A -L", "only one command may be given, not both -A and -L");
        bad("-Ad -t 203.0.113.100:80", "only one command may be given, not both -A and -d");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -g -m", "give one forwarding method");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -w 65536", "-w (--weight): '65536' is not a number in 0..=65535");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -w -1", "'-1' is not a number");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -w 1 -w 2", "option -w (--weight) given twice");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -x lots", "-x (--u-threshold): 'lots' is not a number");
        bad("-a -t 203.0.113.100:80 -r 203.0.113.11 -y -", "-y (--l-threshold): '-' is not a number");
        bad("-A -t", "option -t needs a value");
        bad("-A --tcp-service", "option --tcp-service needs a value");
        bad("-L --numeric=yes", "option --numeric takes no value");
        bad("-A -q", "unknown option '-q'");
        bad("-A --frobnicate", "unknown option '--frobnicate'");
        bad("-L --thresholds", "--thresholds is not supported yet");
        bad("-A -f 1", "firewall-mark services (-f) are not supported yet");
        bad("-A -c -t 203.0.113.100:80", "option -c (--connection) is only valid with -L");
        bad("-A -t 203.0.113.100:80 extra", "unexpected argument 'extra'");
        bad("--", "unexpected '--'");
    }

    #[test]
    fn stats_rate_zero_and_connections() {
        assert_eq!(ok("-L -n --stats"), Command::ListStats { key: None, json: false, exact: false });
        assert_eq!(
            ok("-Ln --stats --exact --json -t 203.0.113.100:80"),
            Command::ListStats { key: Some(tk()), json: true, exact: true }
        );
        assert_eq!(ok("-L -n --rate"), Command::ListRate { key: None, json: false, exact: false });
        assert_eq!(
            ok("-l --rate -u 203.0.113.100:53"),
            Command::ListRate { key: Some(key(Proto::Udp, "203.0.113.100:53")), json: false, exact: false }
        );
        assert_eq!(ok("-L --stats").to_request(), Some(Request::Stats { key: None }));
        assert_eq!(ok("-L --rate -t 203.0.113.100:80").to_request(), Some(Request::Rate { key: Some(tk()) }));
        assert_eq!(ok("-Lnc"), Command::ListConns { key: None, real: None, max: 1000, json: false });
        assert_eq!(
            ok("-L -n -c -t 203.0.113.100:80 -r 203.0.113.11:80 --max 5 --json"),
            Command::ListConns { key: Some(tk()), real: Some("203.0.113.11:80".parse().unwrap()), max: 5, json: true }
        );
        assert_eq!(
            ok("--list --connection --real-server 203.0.113.11").to_request(),
            Some(Request::ListConns { key: None, real: Some("203.0.113.11:0".parse().unwrap()), max: 1000 })
        );
        assert_eq!(ok("-Z"), Command::Zero(None));
        assert_eq!(ok("--zero -t 203.0.113.100:80"), Command::Zero(Some(tk())));
        assert_eq!(ok("-Z -t 203.0.113.100:80").to_request(), Some(Request::Zero { key: Some(tk()) }));
        assert_eq!(ok("--reload"), Command::Reload);
        assert_eq!(ok("--reload").to_request(), Some(Request::Reload));
        bad("-L --stats --rate", "give one listing: --stats and --rate go not together");
        bad("-L -c --stats", "give one listing");
        bad("-L --timeout -c", "give one listing");
        bad("-L -r 203.0.113.11", "-r (--real-server) with -L filters the connection list: add -c");
        bad("-L --max 3", "--max bounds the connection list: add -c");
        bad("-L -c --max 0", "--max: '0' is not a number of entries");
        bad("-L -c --max lots", "--max: 'lots' is not a number");
        bad("-L --exact", "--exact goes with --stats or --rate");
        bad("-Z -r 203.0.113.11", "option -r (--real-server) is only valid with -a, -e, -d or -L");
        bad("-A -t 203.0.113.100:80 --stats", "option --stats is only valid with -L");
        bad("-Z --json", "option --json is only valid with -L or -G");
        bad("-Z -L", "only one command may be given, not both -Z and -L");
    }

    #[test]
    fn addr_route_neigh_subcommands() {
        let a = |s: &str| -> Ipv4Addr { s.parse().unwrap() };
        let w = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            parse_addr_subcommand(&w("add 203.0.113.5/24 dev lan")),
            Ok(Command::AddrAdd { addr: a("203.0.113.5"), len: 24, dev: "lan".into() })
        );
        assert_eq!(
            parse_addr_subcommand(&w("del 203.0.113.5 dev lan")),
            Ok(Command::AddrDel { addr: a("203.0.113.5"), len: 32, dev: "lan".into() })
        );
        assert_eq!(parse_addr_subcommand(&w("show")), Ok(Command::AddrShow { dev: None, json: false }));
        assert_eq!(
            parse_addr_subcommand(&w("show dev lan --json")),
            Ok(Command::AddrShow { dev: Some("lan".into()), json: true })
        );
        let e = |r: Result<Command, ParseError>| r.unwrap_err().to_string();
        assert!(
            e(parse_addr_subcommand(&w("add 203.0.113.5/33 dev lan"))).contains("prefix length '33' is not in 0..=32")
        );
        assert!(e(parse_addr_subcommand(&w("add 203.0.113.300/24 dev lan")))
            .contains("'203.0.113.300' is not an IPv4 address"));
        assert!(e(parse_addr_subcommand(&w("add 203.0.113.5/24"))).contains("addr add needs the port: dev PORT"));
        assert!(e(parse_addr_subcommand(&w("add dev lan"))).contains("addr add needs one IP/LEN"));
        assert!(e(parse_addr_subcommand(&w("add 203.0.113.5/24 dev lan dev wan"))).contains("'dev' given twice"));
        assert!(e(parse_addr_subcommand(&w("flush"))).contains("unknown addr command 'flush'"));
        assert!(e(parse_addr_subcommand::<String>(&[])).contains("usage: rvsadm addr"));

        assert_eq!(
            parse_route_subcommand(&w("add 198.51.100.0/24 via 203.0.113.1 dev lan")),
            Ok(Command::RouteAdd {
                prefix: a("198.51.100.0"),
                len: 24,
                via: Some(a("203.0.113.1")),
                dev: "lan".into()
            })
        );
        assert_eq!(
            parse_route_subcommand(&w("add default via 203.0.113.1 dev lan")),
            Ok(Command::RouteAdd { prefix: a("0.0.0.0"), len: 0, via: Some(a("203.0.113.1")), dev: "lan".into() })
        );
        assert_eq!(
            parse_route_subcommand(&w("del 198.51.100.0/24")),
            Ok(Command::RouteDel { prefix: a("198.51.100.0"), len: 24, via: None, dev: None })
        );
        assert_eq!(parse_route_subcommand(&w("show --json")), Ok(Command::RouteShow { json: true }));
        assert_eq!(
            Command::RouteAdd { prefix: a("0.0.0.0"), len: 0, via: None, dev: "lan".into() }.to_request(),
            Some(Request::RouteAdd { prefix: a("0.0.0.0"), len: 0, via: None, dev: "lan".into() })
        );
        assert!(e(parse_route_subcommand(&w("add 198.51.100.0/24 via 203.0.113")))
            .contains("via '203.0.113' is not an IPv4 address"));
        assert!(
            e(parse_route_subcommand(&w("add 198.51.100.0/24 via 203.0.113.1"))).contains("route add needs the port")
        );
        assert!(e(parse_route_subcommand(&w("show dev lan"))).contains("route show takes no dev/via"));

        assert_eq!(parse_neigh_subcommand(&w("show")), Ok(Command::NeighShow { dev: None, json: false }));
        assert_eq!(
            parse_neigh_subcommand(&w("show dev lan --json")),
            Ok(Command::NeighShow { dev: Some("lan".into()), json: true })
        );
        assert_eq!(parse_neigh_subcommand(&w("flush dev lan")), Ok(Command::NeighFlush { dev: Some("lan".into()) }));
        assert_eq!(Command::NeighFlush { dev: None }.to_request(), Some(Request::NeighFlush { dev: None }));
        assert!(e(parse_neigh_subcommand(&w("flush --json"))).contains("--json is for show"));
        assert!(e(parse_neigh_subcommand(&w("add 203.0.113.1"))).contains("unexpected argument '203.0.113.1'"));
        assert!(e(parse_neigh_subcommand(&w("del"))).contains("unknown neigh command 'del'"));
    }

    #[test]
    fn save_lines_round_trip() {
        let svc = Service {
            key: tk(),
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: vec![
                real("203.0.113.11:80", FwdMode::Dr, 2),
                RealServer { u_threshold: 9, l_threshold: 3, ..real("203.0.113.12:80", FwdMode::Dr, 1) },
            ],
        };
        let lines = save_lines(&svc);
        assert_eq!(lines[0], "-A -t 203.0.113.100:80 -s rr");
        assert_eq!(lines[1], "-a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 2");
        assert_eq!(lines[2], "-a -t 203.0.113.100:80 -r 203.0.113.12:80 -g -w 1 -x 9 -y 3");
        // Each saved line parses back to the command that recreates it.
        assert_eq!(ok(&lines[0]), Command::AddService(Service { reals: vec![], ..svc.clone() }));
        assert_eq!(ok(&lines[1]), Command::AddReal { key: tk(), real: svc.reals[0] });
        assert_eq!(ok(&lines[2]), Command::AddReal { key: tk(), real: svc.reals[1] });
    }
}
