//! The listening sockets, and how the worker threads share them.
//!
//! On Linux every worker gets its own listening socket per address, all bound to the same port
//! with `SO_REUSEPORT`: the kernel spreads new connections over them by a hash of the
//! connection's addresses and ports, so each worker accepts, serves and forwards its own
//! connections on its own single-threaded runtime without waking another thread (nginx's layout;
//! docs/benchmarks.md, Profile, measured it). Elsewhere `SO_REUSEPORT` either does not exist
//! (Windows) or does not balance (macOS, the BSDs' plain flavour), so there is one listener per
//! address, served by one multi-thread runtime (also on a Linux kernel older than 3.9).

use std::net::{SocketAddr, TcpListener};

/// The listening sockets, as the chosen layout uses them.
pub enum Layout {
    /// `[worker][address]`: one listener per worker and address (`SO_REUSEPORT`).
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    PerWorker(Vec<Vec<TcpListener>>),
    /// One listener per address, for one multi-thread runtime.
    Shared(Vec<TcpListener>),
}

/// Binds every address of `addrs` for `workers` workers and logs where it listens. Fails, like a
/// plain bind, if an address is taken (by anyone, including another ancm-serve).
pub fn bind(addrs: &[SocketAddr], workers: usize) -> Result<Layout, String> {
    let layout = layout(addrs, workers)?;
    let first = match &layout {
        Layout::PerWorker(per) => &per[0],
        Layout::Shared(ls) => ls,
    };
    for (l, addr) in first.iter().zip(addrs) {
        log::info!("listening on http://{}", l.local_addr().unwrap_or(*addr));
    }
    Ok(layout)
}

fn cannot_listen(addr: &SocketAddr) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("ancm-serve: cannot listen on {addr}: {e}")
}

/// One plain listener per address.
fn shared(addrs: &[SocketAddr]) -> Result<Layout, String> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let l = TcpListener::bind(addr).map_err(cannot_listen(addr))?;
        l.set_nonblocking(true).map_err(cannot_listen(addr))?;
        listeners.push(l);
    }
    Ok(Layout::Shared(listeners))
}

/// `workers` `SO_REUSEPORT` listeners per address.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn layout(addrs: &[SocketAddr], workers: usize) -> Result<Layout, String> {
    use socket2::{Domain, Protocol, Socket, Type};

    /// How many connections may wait to be accepted, per listener (tokio's default).
    const BACKLOG: i32 = 1024;

    fn socket(addr: SocketAddr) -> std::io::Result<Socket> {
        // socket2 creates it close-on-exec: the app's processes must not inherit it.
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        Ok(s)
    }

    fn reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
        let s = socket(addr)?;
        s.set_reuse_port(true)?;
        s.bind(&addr.into())?;
        s.listen(BACKLOG)?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    }

    // Kernels before 3.9 do not know the option: one shared listener per address then.
    let supported = Socket::new(Domain::IPV4, Type::STREAM, None)
        .and_then(|s| s.set_reuse_port(true))
        .is_ok();
    if !supported {
        return shared(addrs);
    }
    // A plain bind first (no listen, so no connection can land on it), for its error and for the
    // port a `:0` address gets: `SO_REUSEPORT` would let a second ancm-serve join our port
    // silently, while a plain bind is refused as long as anybody listens there.
    let mut bound = Vec::with_capacity(addrs.len());
    let mut probes = Vec::with_capacity(addrs.len());
    for (i, addr) in addrs.iter().enumerate() {
        // Probes that never listen do not refuse each other, so repeats are caught here.
        if addr.port() != 0 && addrs[..i].contains(addr) {
            return Err(format!("ancm-serve: cannot listen on {addr}: given twice"));
        }
        let probe = socket(*addr).map_err(cannot_listen(addr))?;
        probe.bind(&(*addr).into()).map_err(cannot_listen(addr))?;
        let local = probe
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(*addr);
        bound.push(local);
        probes.push(probe);
    }
    drop(probes);
    let per = (0..workers.max(1))
        .map(|_| {
            bound
                .iter()
                .map(|a| reuseport(*a).map_err(cannot_listen(a)))
                .collect()
        })
        .collect::<Result<_, String>>()?;
    Ok(Layout::PerWorker(per))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn layout(addrs: &[SocketAddr], _workers: usize) -> Result<Layout, String> {
    shared(addrs)
}
