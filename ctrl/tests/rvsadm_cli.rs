//! The built rvsadm binary against a test server that records what it receives.

use rvs_config::model::{FwdMode, Proto, RealServer, SchedKind, Service, ServiceKey};
use rvs_ctrl::{PortReport, Request, Response, Server, ServiceStatus};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

struct Lab {
    sock: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
    handle: Option<rvs_ctrl::ServerHandle>,
}

fn key() -> ServiceKey {
    ServiceKey {
        proto: Proto::Tcp,
        vip: "203.0.113.100:80".parse().unwrap(),
    }
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

impl Lab {
    fn new(name: &str) -> Lab {
        let dir =
            std::env::temp_dir().join(format!("rvs-rvsadm-test-{}-{name}", std::process::id()));
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
                        services: listing(),
                    },
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
        Lab {
            sock,
            seen,
            handle: Some(handle),
        }
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
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
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
    let o = lab.run(&[
        "-a",
        "-t",
        "203.0.113.100:80",
        "-r",
        "203.0.113.11",
        "-g",
        "-w",
        "3",
    ]);
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
    assert_eq!(
        stdout(&o),
        "-A -t 203.0.113.100:80 -s rr\n-a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 1\n"
    );
}

#[test]
fn errors_and_exit_codes() {
    let lab = Lab::new("errors");
    // Refused by rvsd: exit 1, message on stderr.
    let o = lab.run(&["-D", "-t", "203.0.113.100:80"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "rvsadm: service TCP 203.0.113.100:80 does not exist\n"
    );
    // Bad syntax: exit 2 with a usage hint, nothing sent.
    lab.take();
    let o = lab.run(&["-A", "-t", "203.0.113.300:80"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("rvsadm: '203.0.113.300:80' is not a valid IPv4 address:port\n"),
        "{}",
        stderr(&o)
    );
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
    let o = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg("-C")
        .env("RVSADM_SOCKET", &lab.sock)
        .output()
        .unwrap();
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
    assert!(
        out.starts_with("0: eth0  driver net_af_packet  mac 02:00:00:00:00:01  link up\n"),
        "{out}"
    );
    assert!(out.contains("drops: 2\n    no_service 2\n"), "{out}");
    assert!(
        !out.contains("ttl_exceeded"),
        "zero drops are hidden: {out}"
    );
    let o = lab.run(&["link", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ports"][0]["stats"]["rx_packets"], 42);
    assert_eq!(v["counters"]["drop_ttl_exceeded"], 0);
    let o = lab.run(&["version"]);
    assert_eq!(
        stdout(&o),
        format!("rvsadm {}\nrvsd 9.9.9\n", env!("CARGO_PKG_VERSION"))
    );
    let o = lab.run(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--add-service"));
    lab.take();
    let o = lab.run_stdin(&["-R"], "# saved\n-A -t 203.0.113.100:80 -s rr\n\n-a -t 203.0.113.100:80 -r 203.0.113.11:80 -g -w 1\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let got = lab.take();
    assert_eq!(got.len(), 2);
    assert!(matches!(got[1], Request::AddReal { .. }));
    let o = lab.run_stdin(
        &["-R"],
        "-A -t 203.0.113.100:80\n-a -t bogus -r 203.0.113.11\n",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("stdin line 2: 'bogus'"),
        "{}",
        stderr(&o)
    );
    assert!(
        lab.take().is_empty(),
        "nothing applied when a line is malformed"
    );
}
