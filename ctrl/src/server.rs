//! rvsd's side of the control socket.
//!
//! Access control is the socket file's mode, 0600 (owner only, i.e. root for rvsd): Linux
//! checks write permission on the socket file at connect(2). The file is bound under a
//! temporary name, chmod-ed, then renamed into place, so it is never reachable with a looser
//! mode. (No SO_PEERCRED check: that needs raw libc calls, which the project keeps in
//! dpdk-sys.)
//!
//! One thread per connection, capped at [`MAX_CONNECTIONS`]; requests are answered in order.

use crate::proto::{Request, Response, MAX_LINE};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Most connections served at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 1024;
/// A connection idle for this long is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A client not reading its answer for this long is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the accept loop checks for shutdown when idle.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// The request handler: rvsd's control logic.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A bound, not yet serving, control socket.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// (dev, ino) of our socket file, so shutdown removes only our own file.
    id: (u64, u64),
}

impl Server {
    /// Bind the control socket at `path` (creating its directory if needed), mode 0600.
    ///
    /// A stale socket file left by a dead rvsd is removed; if a live process answers on it,
    /// this fails with `AddrInUse`. A non-socket file at `path` is never removed.
    pub fn bind(path: &Path) -> io::Result<Server> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| annotate(e, &format!("cannot create {}", dir.display())))?;
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use: another rvsd is already listening on it", path.display()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)
                        .map_err(|e| annotate(e, &format!("cannot remove stale socket {}", path.display())))?;
                }
                Err(e) => return Err(annotate(e, &format!("cannot probe existing socket {}", path.display()))),
            },
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket; refusing to replace it", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, &format!("cannot inspect {}", path.display()))),
        }
        // Bind under a temporary name, restrict it, then move it into place.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| annotate(e, &format!("cannot bind {}", tmp.display())))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(annotate(e, &format!("cannot install socket {}", path.display())));
        }
        let md = std::fs::symlink_metadata(path)?;
        listener.set_nonblocking(true)?;
        Ok(Server { listener, path: path.to_path_buf(), id: (md.dev(), md.ino()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serve requests with `handler` on background threads until [`ServerHandle::shutdown`].
    pub fn run(self, handler: Handler) -> ServerHandle {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let sh = shared.clone();
        let listener = self.listener;
        let accept = thread::Builder::new()
            .name("rvs-ctrl-accept".into())
            .spawn(move || accept_loop(listener, sh, handler))
            .ok();
        ServerHandle { path: self.path, id: self.id, shared, accept }
    }
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

struct Shared {
    stop: AtomicBool,
    active: AtomicUsize,
    next_id: AtomicU64,
    /// Clones of the open connections, to cut them at shutdown.
    conns: Mutex<HashMap<u64, UnixStream>>,
}

/// A serving control socket. Dropping it shuts it down too.
pub struct ServerHandle {
    path: PathBuf,
    id: (u64, u64),
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections being served right now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Stop accepting, close open connections, remove the socket file (if it is still ours).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = accept.join();
        if let Ok(conns) = self.shared.conns.lock() {
            for s in conns.values() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, handler: Handler) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => serve_new(stream, &shared, &handler),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                tracing::warn!("control socket accept failed: {e}");
                thread::sleep(ACCEPT_POLL * 5);
            }
        }
    }
}

/// Decrements the active count and forgets the connection when its thread ends (even by panic).
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.shared.conns.lock() {
            c.remove(&self.id);
        }
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve_new(mut stream: UnixStream, shared: &Arc<Shared>, handler: &Handler) {
    // Accepted sockets do not inherit O_NONBLOCK on Linux, but do not rely on it.
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(READ_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    if shared.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        shared.active.fetch_sub(1, Ordering::SeqCst);
        let msg = format!("too many control connections (limit {MAX_CONNECTIONS}); try again");
        let _ = send(&mut stream, &Response::error(msg));
        return;
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let guard = ConnGuard { shared: shared.clone(), id };
    if let (Ok(clone), Ok(mut conns)) = (stream.try_clone(), shared.conns.lock()) {
        conns.insert(id, clone);
    }
    let handler = handler.clone();
    let spawned = thread::Builder::new().name("rvs-ctrl-conn".into()).spawn(move || {
        let _guard = guard;
        serve_conn(stream, &handler);
    });
    if let Err(e) = spawned {
        // The closure (and with it the guard and the stream) was dropped: counted down, closed.
        tracing::warn!("cannot spawn a control connection thread: {e}");
    }
}

fn send(stream: &mut UnixStream, resp: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(resp).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Read one line of at most [`MAX_LINE`] bytes. `Ok(None)` at end of stream;
/// `Err(InvalidData)` if the line is too long.
fn read_line(reader: &mut BufReader<UnixStream>, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    buf.clear();
    let n = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > MAX_LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too long"));
    }
    Ok(Some(()))
}

fn serve_conn(stream: UnixStream, handler: &Handler) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        let resp = match read_line(&mut reader, &mut buf) {
            Ok(None) => return,
            Ok(Some(())) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Request>(&buf) {
                    Ok(req) => match catch_unwind(AssertUnwindSafe(|| handler(req))) {
                        Ok(r) => r,
                        Err(_) => Response::error("internal error in rvsd while handling the request"),
                    },
                    Err(e) => Response::error(format!("malformed request: {e}")),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let _ = send(&mut out, &Response::error(format!("request line longer than {MAX_LINE} bytes")));
                return;
            }
            // Timeout, reset or shutdown.
            Err(_) => return,
        };
        if send(&mut out, &resp).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn tmp_sock(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("rvs-ctrl-unit-{}-{name}", std::process::id())).join("rvsd.sock")
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let p = tmp_sock("file");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"x").unwrap();
        let e = Server::bind(&p).err().unwrap();
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn stale_socket_replaced_live_one_refused() {
        let p = tmp_sock("stale");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // A socket file nobody listens on any more.
        drop(UnixListener::bind(&p).unwrap());
        assert!(p.exists());
        let h = Server::bind(&p).unwrap().run(Arc::new(|_| Response::Ok));
        let e = Server::bind(&p).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("another rvsd is already listening"), "{e}");
        h.shutdown();
        assert!(!p.exists());
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn overlong_line_answered_and_closed() {
        let p = tmp_sock("long");
        let h = Server::bind(&p).unwrap().run(Arc::new(|_| Response::Ok));
        let mut s = UnixStream::connect(&p).unwrap();
        let big = vec![b'x'; MAX_LINE + 10];
        // The server may close before reading everything; a write error is fine.
        let _ = s.write_all(&big);
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap()).read_line(&mut line).unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert!(matches!(&r, Response::Error { message } if message.contains("longer than")), "{r:?}");
        h.shutdown();
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    #[test]
    fn handler_panic_is_an_error_response() {
        let p = tmp_sock("panic");
        let h = Server::bind(&p).unwrap().run(Arc::new(|r| match r {
            Request::Clear => panic!("boom"),
            _ => Response::Ok,
        }));
        let mut s = UnixStream::connect(&p).unwrap();
        s.write_all(b"{\"op\":\"clear\"}\n{\"op\":\"version\"}\n").unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("internal error"), "{line}");
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), r#"{"status":"ok"}"#);
        h.shutdown();
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }
}
