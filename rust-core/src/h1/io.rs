//! Reads with a deadline, and writes that copy small pieces together to save system calls.

use std::io;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Pieces up to this size are copied behind what is already waiting to go out, so that a head
/// and a small body leave in one write.
const COPY_BELOW: usize = 16 * 1024;
/// Room made in a read buffer before each read.
const READ_ROOM: usize = 8 * 1024;
/// Bytes a client may send ahead (pipelined requests) while its request is answered; beyond
/// this the client is not read until the response is out.
pub const MAX_AHEAD: usize = 64 * 1024;

/// Reads more bytes into `buf`, giving up at `deadline` (`None`: never).
pub async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Option<Instant>,
) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    reserve(buf);
    match deadline {
        None => s.read_buf(buf).await,
        Some(at) => tokio::select! {
            biased;
            r = s.read_buf(buf) => r,
            () = crate::timer::sleep_until(at) => Err(io::ErrorKind::TimedOut.into()),
        },
    }
}

/// Why a [`read_watching`] read gave no bytes.
#[derive(Debug)]
pub enum Watched {
    /// The backend connection failed.
    Backend(io::Error),
    /// The client closed its connection (`UnexpectedEof`) or it failed.
    Client(io::Error),
    /// Nothing came before the deadline.
    TimedOut,
}

/// Reads more of the backend's bytes into `buf` (`Ok(0)`: its end) by `deadline` (`None`:
/// never), watching the client meanwhile: one that leaves (or fails) ends the wait at once, as
/// the general path's server cancels a request whose client left, and bytes it sends ahead
/// (pipelined requests) are kept in `ahead`, up to [`MAX_AHEAD`].
pub async fn read_watching(
    backend: &mut TcpStream,
    buf: &mut Vec<u8>,
    client: &mut TcpStream,
    ahead: &mut Vec<u8>,
    deadline: Option<Instant>,
) -> Result<usize, Watched> {
    use tokio::io::AsyncReadExt;
    reserve(buf);
    // Costs no system call when the reactor has not seen the socket readable since the last
    // read that drained it, and saves a timer when the bytes are already there.
    match backend.try_read_buf(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        r => return r.map_err(Watched::Backend),
    }
    loop {
        let sleep = async {
            match deadline {
                Some(at) => crate::timer::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = backend.read_buf(buf) => return r.map_err(Watched::Backend),
            r = client.read_buf(ahead), if ahead.len() < MAX_AHEAD => match r {
                Ok(0) => {
                    return Err(Watched::Client(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed its connection",
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(Watched::Client(e)),
            },
            () = sleep => return Err(Watched::TimedOut),
        }
    }
}

/// How a wait for the backend watches the client meanwhile.
pub trait Watch {
    /// Reads more of the backend's bytes into `buf` (`Ok(0)`: its end) by `deadline` (`None`:
    /// never).
    fn read(
        &mut self,
        backend: &mut TcpStream,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> impl std::future::Future<Output = Result<usize, Watched>>;
}

/// Watches a client socket ([`read_watching`]).
pub struct Client<'a> {
    /// The client connection.
    pub stream: &'a mut TcpStream,
    /// Bytes it sent ahead.
    pub ahead: &'a mut Vec<u8>,
}

impl Watch for Client<'_> {
    async fn read(
        &mut self,
        backend: &mut TcpStream,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, Watched> {
        read_watching(backend, buf, self.stream, self.ahead, deadline).await
    }
}

/// Watches nothing: a host without a socket here (the C ABI) cancels by dropping the wait.
pub struct Unwatched;

impl Watch for Unwatched {
    async fn read(
        &mut self,
        backend: &mut TcpStream,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, Watched> {
        read_backend(backend, buf, deadline).await
    }
}

/// Reads more of the backend's bytes into `buf` by `deadline`, nothing else watched.
pub async fn read_backend(
    backend: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Option<Instant>,
) -> Result<usize, Watched> {
    use tokio::io::AsyncReadExt;
    reserve(buf);
    match backend.try_read_buf(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        r => return r.map_err(Watched::Backend),
    }
    match deadline {
        None => backend.read_buf(buf).await.map_err(Watched::Backend),
        Some(at) => tokio::select! {
            biased;
            r = backend.read_buf(buf) => r.map_err(Watched::Backend),
            () = crate::timer::sleep_until(at) => Err(Watched::TimedOut),
        },
    }
}

/// Makes room for a read of a useful size.
pub fn reserve(buf: &mut Vec<u8>) {
    if buf.capacity() - buf.len() < READ_ROOM / 4 {
        buf.reserve(READ_ROOM);
    }
}

/// Bytes on their way to the client: small pieces are gathered, large ones written directly.
pub struct Sink<'a> {
    /// The client connection.
    pub stream: &'a mut TcpStream,
    /// What is waiting to go out.
    pub pending: &'a mut Vec<u8>,
    /// Bytes the client sent ahead while its response was on its way (read while the backend
    /// is awaited, to see a client leave).
    pub ahead: &'a mut Vec<u8>,
    /// Body bytes queued so far (payload only: chunk framing goes straight to `pending`), for
    /// the host's access log.
    pub sent: u64,
}

impl Watch for Sink<'_> {
    async fn read(
        &mut self,
        backend: &mut TcpStream,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<usize, Watched> {
        read_watching(backend, buf, self.stream, self.ahead, deadline).await
    }
}

impl super::relay::Out for Sink<'_> {
    async fn data(&mut self, data: &[u8]) -> io::Result<()> {
        Sink::data(self, data).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        Sink::flush(self).await
    }

    fn framing(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }
}

impl Sink<'_> {
    /// Queues `data` (writing what is pending first when `data` is large).
    pub async fn data(&mut self, data: &[u8]) -> io::Result<()> {
        self.sent += data.len() as u64;
        if self.pending.len() + data.len() <= COPY_BELOW {
            self.pending.extend_from_slice(data);
            return Ok(());
        }
        self.flush().await?;
        self.stream.write_all(data).await
    }

    /// Writes everything pending.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.stream.write_all(self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }
}
