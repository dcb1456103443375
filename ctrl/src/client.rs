//! rvsadm's side of the control socket.

use crate::proto::{Request, Response, MAX_LINE};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long to wait for the connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to rvsd at {}: {} ({})", path.display(), os_msg(source), connect_hint(source))]
    Connect { path: PathBuf, source: io::Error },
    #[error("rvsd at {} did not accept the connection within {}s", path.display(), CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout { path: PathBuf },
    #[error("rvsd at {} did not answer within {}s", path.display(), READ_TIMEOUT.as_secs())]
    Timeout { path: PathBuf },
    #[error("lost the connection to rvsd at {}: {}", path.display(), os_msg(source))]
    Io { path: PathBuf, source: io::Error },
    #[error("rvsd at {} closed the connection without answering", path.display())]
    Closed { path: PathBuf },
    #[error("malformed response from rvsd: {0}")]
    BadResponse(String),
}

/// An io::Error's text without std's " (os error N)" suffix.
fn os_msg(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "the control socket is root-only: run as root",
        _ => "is rvsd running?",
    }
}

/// A connection to rvsd that can carry several requests.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let p = path.to_path_buf();
        // connect(2) on a Unix socket blocks while the listen backlog is full; bound the wait.
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("rvsadm-connect".into()).spawn(move || {
            let _ = tx.send(UnixStream::connect(&p));
        });
        let res = match spawned {
            Ok(_) => rx.recv_timeout(CONNECT_TIMEOUT).map_err(|_| ClientError::ConnectTimeout { path: path.into() })?,
            Err(_) => UnixStream::connect(path),
        };
        let stream = res.map_err(|source| ClientError::Connect { path: path.into(), source })?;
        let io = |source| ClientError::Io { path: path.into(), source };
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Client { path: path.into(), reader: BufReader::new(stream), writer })
    }

    /// Send one request and wait for its response.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(req).map_err(|e| ClientError::BadResponse(e.to_string()))?;
        line.push(b'\n');
        let path = &self.path;
        let io_err = |source: io::Error| {
            if matches!(source.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                ClientError::Timeout { path: path.clone() }
            } else {
                ClientError::Io { path: path.clone(), source }
            }
        };
        self.writer.write_all(&line).map_err(io_err)?;
        let mut buf = Vec::new();
        let n = self.reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).map_err(io_err)?;
        if n == 0 {
            return Err(ClientError::Closed { path: path.clone() });
        }
        if buf.last() != Some(&b'\n') {
            return Err(if buf.len() > MAX_LINE {
                ClientError::BadResponse(format!("response longer than {MAX_LINE} bytes"))
            } else {
                ClientError::Closed { path: path.clone() }
            });
        }
        serde_json::from_slice(&buf).map_err(|e| ClientError::BadResponse(e.to_string()))
    }
}

/// Connect, send one request, return its response.
pub fn request(path: &Path, req: &Request) -> Result<Response, ClientError> {
    Client::connect(path)?.request(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_message() {
        let p = std::env::temp_dir().join(format!("rvs-ctrl-nonexistent-{}.sock", std::process::id()));
        let e = request(&p, &Request::Version).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot connect to rvsd at {}: No such file or directory (is rvsd running?)", p.display())
        );
    }
}
