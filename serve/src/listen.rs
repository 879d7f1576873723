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
    // A plain bind first, for its error and for the port a `:0` address gets. `SO_REUSEPORT`
    // would let a second ancm-serve join our port silently; the plain bind refuses while
    // anybody listens there.
    let mut plain = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .map_err(|e| format!("ancm-serve: cannot listen on {addr}: {e}"))?;
        l.set_nonblocking(true)
            .map_err(|e| format!("ancm-serve: cannot listen on {addr}: {e}"))?;
        plain.push(l);
    }
    let layout = per_worker(plain, workers)?;
    let first = match &layout {
        Layout::PerWorker(per) => &per[0],
        Layout::Shared(ls) => ls,
    };
    for (l, addr) in first.iter().zip(addrs) {
        log::info!("listening on http://{}", l.local_addr().unwrap_or(*addr));
    }
    Ok(layout)
}

/// Replaces the plain listeners by `SO_REUSEPORT` ones on the same addresses, `workers` of each.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn per_worker(plain: Vec<TcpListener>, workers: usize) -> Result<Layout, String> {
    use socket2::{Domain, Protocol, Socket, Type};

    /// How many connections may wait to be accepted, per listener (tokio's default).
    const BACKLOG: i32 = 1024;

    fn reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
        // socket2 creates it close-on-exec: the app's processes must not inherit it.
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
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
        return Ok(Layout::Shared(plain));
    }
    let bound = plain
        .iter()
        .map(|l| l.local_addr().map_err(|e| format!("ancm-serve: {e}")))
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    // The plain listeners go before the port is bound again: a socket without SO_REUSEPORT
    // on the port would refuse the others.
    drop(plain);
    let per = (0..workers.max(1))
        .map(|_| {
            bound
                .iter()
                .map(|a| {
                    reuseport(*a).map_err(|e| format!("ancm-serve: cannot listen on {a}: {e}"))
                })
                .collect()
        })
        .collect::<Result<_, String>>()?;
    Ok(Layout::PerWorker(per))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn per_worker(plain: Vec<TcpListener>, _workers: usize) -> Result<Layout, String> {
    Ok(Layout::Shared(plain))
}
