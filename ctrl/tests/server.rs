//! The control server on a real Unix socket.

use rvs_config::model::{Proto, ServiceKey};
use rvs_ctrl::{request, Client, Request, Response, Server};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

fn sock(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvs-ctrl-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("rvsd.sock")
}

/// Echo-ish handler: Version answers with a version, List with no services, Clear errors.
fn handler() -> rvs_ctrl::Handler {
    Arc::new(|r: Request| match r {
        Request::Version => Response::Version { version: "test".into() },
        Request::List { .. } => Response::Services { services: vec![] },
        Request::Clear => Response::error("clear refused"),
        _ => Response::Ok,
    })
}

#[test]
fn request_response_mode_and_shutdown() {
    let p = sock("basic");
    let h = Server::bind(&p).unwrap().run(handler());
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    assert_eq!(request(&p, &Request::Version).unwrap(), Response::Version { version: "test".into() });
    assert_eq!(request(&p, &Request::Clear).unwrap(), Response::error("clear refused"));
    let key = ServiceKey { proto: Proto::Tcp, vip: "203.0.113.100:80".parse().unwrap() };
    // Several requests over one connection.
    let mut c = Client::connect(&p).unwrap();
    assert_eq!(c.request(&Request::DelService { key }).unwrap(), Response::Ok);
    assert_eq!(c.request(&Request::List { key: None }).unwrap(), Response::Services { services: vec![] });
    h.shutdown();
    assert!(!p.exists(), "shutdown removes the socket file");
    let e = request(&p, &Request::Version).unwrap_err().to_string();
    assert!(e.contains("cannot connect to rvsd") && e.contains("is rvsd running?"), "{e}");
    std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
}

#[test]
fn malformed_lines_get_errors_and_the_connection_survives() {
    let p = sock("malformed");
    let h = Server::bind(&p).unwrap().run(handler());
    let s = UnixStream::connect(&p).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut ask = |line: &str| -> Response {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        let mut out = String::new();
        r.read_line(&mut out).unwrap();
        serde_json::from_str(&out).unwrap()
    };
    for bad in
        ["this is not json", r#"{"op":"reboot"}"#, r#"{"op":"del_service"}"#, r#"{"op":"add_real","key":1}"#, "[]"]
    {
        match ask(bad) {
            Response::Error { message } => assert!(message.starts_with("malformed request: "), "{bad}: {message}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(ask(r#"{"op":"version"}"#), Response::Version { version: "test".into() });
    h.shutdown();
    std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
}

#[test]
fn many_concurrent_clients() {
    let p = sock("concurrent");
    let h = Server::bind(&p).unwrap().run(handler());
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&p).unwrap();
                for _ in 0..5 {
                    assert_eq!(c.request(&Request::Version).unwrap(), Response::Version { version: "test".into() });
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    h.shutdown();
    std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
}

#[test]
fn open_connections_are_closed_at_shutdown() {
    let p = sock("close");
    let h = Server::bind(&p).unwrap().run(handler());
    let mut c = Client::connect(&p).unwrap();
    assert!(c.request(&Request::Version).is_ok());
    h.shutdown();
    assert!(c.request(&Request::Version).is_err());
    std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
}
