//! The built rvsadm binary against a test server that records what it receives.

use rvs_config::model::{ClientAddrMode, FwdMode, Persistence, Proto, RealServer, SchedKind, Service, ServiceKey};
use rvs_config::ServiceTable;
use rvs_ctrl::{PortReport, Request, Response, Server, ServiceLaddrs, ServiceStatus};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

struct Lab {
    sock: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
    handle: Option<rvs_ctrl::ServerHandle>,
}

fn key() -> ServiceKey {
    ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() }
}

fn listing() -> Vec<ServiceStatus> {
    vec![ServiceStatus {
        service: Service {
            key: key(),
            sched: SchedKind::Rr,
            persistence: None,
            laddrs: Vec::new(),
            client_addr: Default::default(),
            reals: vec![RealServer {
                addr: "203.0.113.11:80".parse().unwrap(),
                fwd: FwdMode::Dr,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            }],
        },
        conns: vec![(0, 0)],
    }]
}

/// A FULLNAT/NAT/TUN service with persistence, thresholds and local addresses.
fn fullnat_listing() -> Vec<ServiceStatus> {
    let r = |addr: &str, fwd, weight, u, l| RealServer {
        addr: addr.parse().unwrap(),
        fwd,
        weight,
        u_threshold: u,
        l_threshold: l,
    };
    vec![ServiceStatus {
        service: Service {
            key: key(),
            sched: SchedKind::Wlc,
            persistence: Some(Persistence { timeout_s: 300, netmask: Ipv4Addr::new(255, 255, 255, 0) }),
            laddrs: vec!["203.0.113.3".parse().unwrap()],
            client_addr: ClientAddrMode::ProxyV2,
            reals: vec![
                r("198.51.100.11:8080", FwdMode::FullNat, 2, 100, 50),
                r("198.51.100.12:8080", FwdMode::Nat, 1, 0, 0),
                r("198.51.100.13:80", FwdMode::Tun, 1, 0, 0),
            ],
        },
        conns: vec![(3, 4), (0, 0), (0, 1)],
    }]
}

impl Lab {
    fn new(name: &str) -> Lab {
        Lab::with_listing(name, listing())
    }

    fn with_listing(name: &str, services: Vec<ServiceStatus>) -> Lab {
        let dir = std::env::temp_dir().join(format!("rvs-rvsadm-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sock = dir.join("rvsd.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        let handle = Server::bind(&sock)
            .unwrap()
            .run(Arc::new(move |r: Request| {
                rec.lock().unwrap().push(r.clone());
                match r {
                    Request::List { .. } => Response::Services {
                        services: services.clone(),
                    },
                    Request::GetLaddr { .. } => Response::Laddrs {
                        services: services
                            .iter()
                            .map(|s| ServiceLaddrs { key: s.service.key, laddrs: s.service.laddrs.clone() })
                            .collect(),
                    },
                    Request::GetTimeouts => Response::Timeouts { tcp: 900, tcpfin: 120, udp: 300 },
                    Request::GetExpireNodestConn => Response::ExpireNodestConn { enabled: true },
                    Request::AddLaddr { addr, .. } if addr.is_ipv6() => {
                        Response::error("service TCP 203.0.113.100:80: local address 2001:db8::3: IPv6 local addresses are not supported yet")
                    }
                    Request::Version => Response::Version {
                        version: "9.9.9".into(),
                    },
                    Request::LinkShow => Response::Link {
                        ports: vec![PortReport {
                            name: "eth0".into(),
                            port_id: 0,
                            driver: "net_af_packet".into(),
                            mac: "02:00:00:00:00:01".into(),
                            link_up: true,
                            stats: vec![("rx_packets".into(), 42)],
                        }],
                        counters: vec![
                            ("rx_pkts".into(), 42),
                            ("drop_no_service".into(), 2),
                            ("drop_ttl_exceeded".into(), 0),
                        ],
                    },
                    Request::DelService { .. } => {
                        Response::error("service TCP 203.0.113.100:80 does not exist")
                    }
                    _ => Response::Ok,
                }
            }));
        Lab { sock, seen, handle: Some(handle) }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, "")
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
            .arg("--socket")
            .arg(&self.sock)
            .args(args)
            .env_remove("RVSADM_SOCKET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
        if let Some(d) = self.sock.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn add_service_sends_the_right_request() {
    let lab = Lab::new("add");
    let o = lab.run(&["-A", "-t", "203.0.113.100:80", "-s", "rr"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert_eq!(
        lab.take(),
        [Request::AddService {
            service: Service {
                key: key(),
                sched: SchedKind::Rr,
                persistence: None,
                laddrs: Vec::new(),
                client_addr: Default::default(),
                reals: vec![]
            }
        }]
    );
    let o = lab.run(&["-a", "-t", "203.0.113.100:80", "-r", "203.0.113.11", "-g", "-w", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lab.take(),
        [Request::AddReal {
            key: key(),
            real: RealServer {
                addr: "203.0.113.11:0".parse().unwrap(),
                fwd: FwdMode::Dr,
                weight: 3,
                u_threshold: 0,
                l_threshold: 0
            }
        }]
    );
}

#[test]
fn list_output_matches_ipvsadm() {
    let lab = Lab::new("list");
    let o = lab.run(&["-L", "-n"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "rvs {} (ipvsadm-compatible listing)\n\
             Prot LocalAddress:Port Scheduler Flags\n\
             \x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  203.0.113.100:80 rr\n\
             \x20 -> 203.0.113.11:80              Route   1      0          0         \n",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert_eq!(lab.take(), [Request::List { key: None }]);
    let o = lab.run(&["-Ln", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let parsed: Vec<ServiceStatus> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(parsed, listing());
    let o = lab.run(&["-S", "-n"]);
    assert_eq!(stdout(&o), "-A -t 203.0.113.100:80 -s rr\n-a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 1\n");
}

#[test]
fn errors_and_exit_codes() {
    let lab = Lab::new("errors");
    // Refused by rvsd: exit 1, message on stderr.
    let o = lab.run(&["-D", "-t", "203.0.113.100:80"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "rvsadm: service TCP 203.0.113.100:80 does not exist\n");
    // Bad syntax: exit 2 with a usage hint, nothing sent.
    lab.take();
    let o = lab.run(&["-A", "-t", "203.0.113.300:80"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("rvsadm: '203.0.113.300:80' is not a valid IPv4 address:port\n"), "{}", stderr(&o));
    assert!(stderr(&o).contains("rvsadm --help"));
    assert!(lab.take().is_empty());
    // Unreachable rvsd: exit 1.
    let o = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(["--socket", "/nonexistent/rvsd.sock", "-L", "-n"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "rvsadm: cannot connect to rvsd at /nonexistent/rvsd.sock: No such file or directory (is rvsd running?)\n"
    );
    let o = lab.run(&["link", "up"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn socket_from_environment() {
    let lab = Lab::new("env");
    let o = Command::new(env!("CARGO_BIN_EXE_rvsadm")).arg("-C").env("RVSADM_SOCKET", &lab.sock).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.take(), [Request::Clear]);
    assert!(Path::new(&lab.sock).exists());
}

#[test]
fn link_show_version_help_restore() {
    let lab = Lab::new("misc");
    let o = lab.run(&["link", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("0: eth0  driver net_af_packet  mac 02:00:00:00:00:01  link up\n"), "{out}");
    assert!(out.contains("drops: 2\n    no_service 2\n"), "{out}");
    assert!(!out.contains("ttl_exceeded"), "zero drops are hidden: {out}");
    let o = lab.run(&["link", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ports"][0]["stats"]["rx_packets"], 42);
    assert_eq!(v["counters"]["drop_ttl_exceeded"], 0);
    let o = lab.run(&["version"]);
    assert_eq!(stdout(&o), format!("rvsadm {}\nrvsd 9.9.9\n", env!("CARGO_PKG_VERSION")));
    let o = lab.run(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--add-service"));
    lab.take();
    let o = lab.run_stdin(
        &["-R"],
        "# saved\n-A -t 203.0.113.100:80 -s rr\n\n-a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 1\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = lab.take();
    assert_eq!(got.len(), 2);
    assert!(matches!(got[1], Request::AddReal { .. }));
    let o = lab.run_stdin(&["-R"], "-A -t 203.0.113.100:80\n-a -t bogus -r 203.0.113.11\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("stdin line 2: 'bogus'"), "{}", stderr(&o));
    assert!(lab.take().is_empty(), "nothing applied when a line is malformed");
}

#[test]
fn laddr_commands_dpvs_syntax_and_subcommand() {
    let lab = Lab::with_listing("laddr", fullnat_listing());
    let lip: IpAddr = "203.0.113.3".parse().unwrap();
    // DPVS's exact syntax, -F accepted and ignored.
    let o = lab.run(&["--add-laddr", "-z", "203.0.113.3", "-t", "203.0.113.100:80", "-F", "dpdk0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let o = lab.run(&["laddr", "add", "-t", "203.0.113.100:80", "203.0.113.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lab.run(&["-Q", "-t", "203.0.113.100:80", "-z", "203.0.113.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lab.run(&["laddr", "del", "-t", "203.0.113.100:80", "203.0.113.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lab.take(),
        [
            Request::AddLaddr { key: key(), addr: lip },
            Request::AddLaddr { key: key(), addr: lip },
            Request::DelLaddr { key: key(), addr: lip },
            Request::DelLaddr { key: key(), addr: lip },
        ]
    );
    // Listing: DPVS-like table, and JSON.
    let o = lab.run(&["--get-laddr", "-t", "203.0.113.100:80"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Prot VIP:VPORT              TOTAL LADDR\nTCP  203.0.113.100:80       1     203.0.113.3\n");
    assert_eq!(lab.take(), [Request::GetLaddr { key: Some(key()) }]);
    let o = lab.run(&["laddr", "show", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Vec<ServiceLaddrs> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v, [ServiceLaddrs { key: key(), laddrs: vec![lip] }]);
    assert_eq!(lab.take(), [Request::GetLaddr { key: None }]);
    // Refused by rvsd: exit 1 with its message; bad syntax: exit 2, nothing sent.
    let o = lab.run(&["laddr", "add", "-t", "203.0.113.100:80", "2001:db8::3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("IPv6 local addresses are not supported yet"), "{}", stderr(&o));
    lab.take();
    let o = lab.run(&["laddr", "add", "-t", "203.0.113.100:80"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).starts_with("rvsadm: laddr add needs a local address (LIP)\n"), "{}", stderr(&o));
    let o = lab.run(&["--add-laddr", "-t", "203.0.113.100:80"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("needs a local address: -z LIP"), "{}", stderr(&o));
    assert!(lab.take().is_empty());
}

#[test]
fn timeouts_and_expire_nodest_conn() {
    let lab = Lab::new("timeouts");
    let o = lab.run(&["--set", "900", "0", "60"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = lab.run(&["--set-expire-nodest-conn", "on"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        lab.take(),
        [Request::SetTimeouts { tcp: 900, tcpfin: 0, udp: 60 }, Request::SetExpireNodestConn { enabled: true }]
    );
    let o = lab.run(&["-L", "--timeout"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Timeout (tcp tcpfin udp): 900 120 300\n");
    let o = lab.run(&["-L", "--timeout", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["tcp"].as_u64(), v["tcpfin"].as_u64(), v["udp"].as_u64()), (Some(900), Some(120), Some(300)));
    let o = lab.run(&["--get-expire-nodest-conn"]);
    assert_eq!(stdout(&o), "expire_nodest_conn on\n");
    assert_eq!(lab.take(), [Request::GetTimeouts, Request::GetTimeouts, Request::GetExpireNodestConn]);
    let o = lab.run(&["--set", "900", "120"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--set needs three values"), "{}", stderr(&o));
    let o = lab.run(&["--set-expire-nodest-conn", "sometimes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(lab.take().is_empty());
}

#[test]
fn modes_client_addr_and_persistence_are_sent() {
    let lab = Lab::new("modes");
    for (flag, fwd, rs) in [
        ("-m", FwdMode::Nat, "198.51.100.11:8080"),
        ("-b", FwdMode::FullNat, "198.51.100.12:8080"),
        ("-i", FwdMode::Tun, "198.51.100.13:80"),
        ("--masquerading", FwdMode::Nat, "198.51.100.14"),
    ] {
        let o = lab.run(&["-a", "-t", "203.0.113.100:80", "-r", rs, flag, "-w", "2", "-x", "10", "-y", "5"]);
        assert!(o.status.success(), "{flag}: {}", stderr(&o));
        let got = lab.take();
        let want_addr = if rs.contains(':') { rs.to_string() } else { format!("{rs}:0") };
        assert_eq!(
            got,
            [Request::AddReal {
                key: key(),
                real: RealServer { addr: want_addr.parse().unwrap(), fwd, weight: 2, u_threshold: 10, l_threshold: 5 }
            }],
            "{flag}"
        );
    }
    let o = lab.run(&["-A", "-t", "203.0.113.100:80", "-s", "mh", "-p", "-M", "255.255.0.0", "--proxy-protocol", "v2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let Request::AddService { service } = &lab.take()[0] else { panic!() };
    assert_eq!(service.sched, SchedKind::Mh);
    assert_eq!(service.persistence, Some(Persistence { timeout_s: 300, netmask: Ipv4Addr::new(255, 255, 0, 0) }));
    assert_eq!(service.client_addr, ClientAddrMode::ProxyV2);
}

#[test]
fn fullnat_list_save_and_restore_round_trip() {
    let lab = Lab::with_listing("fullnat", fullnat_listing());
    let o = lab.run(&["-L", "-n"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let body: Vec<String> = stdout(&o).lines().skip(3).map(str::to_string).collect();
    assert_eq!(
        body,
        [
            "TCP  203.0.113.100:80 wlc persistent 300 mask 255.255.255.0 client-addr proxy-v2",
            "  -> 198.51.100.11:8080           FullNat 2      3          4         ",
            "  -> 198.51.100.12:8080           Masq    1      0          0         ",
            "  -> 198.51.100.13:80             Tunnel  1      0          1         ",
            "  -> laddr 203.0.113.3",
        ]
    );
    let o = lab.run(&["-L", "-n", "--json"]);
    let parsed: Vec<ServiceStatus> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(parsed, fullnat_listing(), "--json has every field");
    let o = lab.run(&["-S", "-n"]);
    let saved = stdout(&o);
    assert_eq!(
        saved,
        "-A -t 203.0.113.100:80 -s wlc -p 300 -M 255.255.255.0 --client-addr proxy-v2\n\
         --add-laddr -t 203.0.113.100:80 -z 203.0.113.3\n\
         -a -t 203.0.113.100:80 -r 198.51.100.11:8080 -b -w 2 -x 100 -y 50\n\
         -a -t 203.0.113.100:80 -r 198.51.100.12:8080 -m -w 1\n\
         -a -t 203.0.113.100:80 -r 198.51.100.13:80 -i -w 1\n"
    );
    lab.take();
    // -R of what -S printed sends requests that rebuild exactly the listed table.
    let o = lab.run_stdin(&["-R"], &saved);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut t = ServiceTable::new();
    for r in lab.take() {
        match r {
            Request::AddService { service } => t.add_service(service),
            Request::AddLaddr { key, addr } => t.add_laddr(&key, addr),
            Request::AddReal { key, real } => t.add_real(&key, real),
            other => panic!("unexpected {other:?}"),
        }
        .unwrap();
    }
    let want = ServiceTable::from_services(fullnat_listing().into_iter().map(|s| s.service).collect()).unwrap();
    assert_eq!(t, want);
    // -R also takes --set and the tunable, which -S does not print but an operator may add.
    let o = lab.run_stdin(
        &["-R"],
        "--set 900 120 300\n--set-expire-nodest-conn off\n--del-laddr -t 203.0.113.100:80 -z 203.0.113.3\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(lab.take().len(), 3);
    let o = lab.run_stdin(&["-R"], "-L -n\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("stdin line 1: only -A -E -D -C -a -e -d --add-laddr"), "{}", stderr(&o));
}
