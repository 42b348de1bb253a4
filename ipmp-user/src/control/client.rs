//! Client side: one request line out, one response line back.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::UnixStream as StdUnixStream,
    path::Path,
};

use tokio::{
    io::{
        AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader as TokioBufReader,
    },
    net::UnixStream,
};

use super::protocol::{
    ControlError, MAX_RESPONSE_LINE, ProbeLine, Request, Response, Snapshot, TIMEOUT,
};

fn encode(req: &Request) -> Result<Vec<u8>, ControlError> {
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    Ok(line)
}

/// Parses one response line as read by `read_until(b'\n')` on a reader limited to
/// `MAX_RESPONSE_LINE + 1` bytes.
fn decode(path: &Path, line: &[u8]) -> Result<Response, ControlError> {
    if line.is_empty() {
        return Err(ControlError::Closed {
            path: path.to_path_buf(),
        });
    }
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if body.len() > MAX_RESPONSE_LINE {
        return Err(ControlError::LineTooLong {
            limit: MAX_RESPONSE_LINE,
        });
    }
    if body.len() == line.len() {
        // EOF before the newline: the daemon went away mid-answer.
        return Err(ControlError::Closed {
            path: path.to_path_buf(),
        });
    }
    Ok(serde_json::from_slice(body)?)
}

/// Sends `req` to the ipmpd listening on `path` and returns its answer (an `Error` answer is
/// returned as such; see [`Response::into_result`]).
pub async fn request(path: &Path, req: &Request) -> Result<Response, ControlError> {
    let io = |e| ControlError::from_io(path, e);
    let exchange = async {
        let mut stream = UnixStream::connect(path).await.map_err(io)?;
        stream.write_all(&encode(req)?).await.map_err(io)?;
        let mut reader = TokioBufReader::new(stream).take(MAX_RESPONSE_LINE as u64 + 1);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line).await.map_err(io)?;
        decode(path, &line)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ControlError::Timeout {
            path: path.to_path_buf(),
            secs: TIMEOUT.as_secs(),
        })?
}

/// Blocking variant of [`request`] for the command-line tools (no runtime needed).
pub fn request_blocking(path: &Path, req: &Request) -> Result<Response, ControlError> {
    let io = |e| ControlError::from_io(path, e);
    let mut stream = StdUnixStream::connect(path).map_err(io)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.write_all(&encode(req)?).map_err(io)?;
    let mut reader = BufReader::new(stream).take(MAX_RESPONSE_LINE as u64 + 1);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).map_err(io)?;
    decode(path, &line)
}

/// Asks for the [`Snapshot`]; a daemon error becomes [`ControlError::Daemon`].
pub fn status_blocking(path: &Path) -> Result<Snapshot, ControlError> {
    request_blocking(path, &Request::Status)?.into_snapshot()
}

/// The probe stream of [`subscribe_probes`]: an iterator of probe lines that ends when ipmpd
/// closes the connection (then with [`ControlError::Closed`]).
pub struct ProbeStream {
    path: std::path::PathBuf,
    reader: BufReader<StdUnixStream>,
}

impl Iterator for ProbeStream {
    type Item = Result<ProbeLine, ControlError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_RESPONSE_LINE as u64 + 1)
            .read_until(b'\n', &mut line);
        if let Err(e) = read {
            return Some(Err(ControlError::from_io(&self.path, e)));
        }
        Some(
            decode(&self.path, &line).and_then(|r| match r.into_result()? {
                Response::Probe(p) => Ok(p),
                other => Err(ControlError::Unexpected {
                    expected: "probe",
                    got: other.kind(),
                }),
            }),
        )
    }
}

/// Asks ipmpd for its probe stream. Blocks while reading; no read timeout (probes can be
/// seconds apart).
pub fn subscribe_probes(path: &Path) -> Result<ProbeStream, ControlError> {
    let io = |e| ControlError::from_io(path, e);
    let mut stream = StdUnixStream::connect(path).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.write_all(&encode(&Request::Probes)?).map_err(io)?;
    Ok(ProbeStream {
        path: path.to_path_buf(),
        reader: BufReader::new(stream),
    })
}
