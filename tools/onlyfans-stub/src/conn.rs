//! Connections the stub can drop on purpose (the `reset` fault).
//!
//! axum hands a handler no access to its socket, so [`KillableListener`] wraps
//! every accepted [`TcpStream`] in a [`KillableStream`] that shares a
//! [`KillSwitch`] with the request (through axum's connect-info extension,
//! [`ConnCtx`]). A handler that flips the switch returns any response; the
//! stream then fails hyper's first write with `ConnectionReset`, hyper gives
//! up on the connection without writing a byte, and the socket is closed
//! (with `SO_LINGER` 0 where possible, so the client sees a TCP reset).

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    extract::connect_info::Connected,
    serve::{IncomingStream, Listener},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

/// Shared flag: once set, the connection's stream fails every read and write.
#[derive(Debug, Default)]
pub struct KillSwitch {
    /// Set once by [`KillSwitch::kill`], never cleared.
    killed: AtomicBool,
}

impl KillSwitch {
    /// Marks the connection to be dropped at the next I/O.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Whether [`KillSwitch::kill`] was called.
    #[must_use]
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// A [`TcpStream`] that can be killed from a request handler.
#[derive(Debug)]
pub struct KillableStream {
    /// The accepted socket.
    inner: TcpStream,
    /// Shared with the requests on this connection.
    switch: Arc<KillSwitch>,
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.switch.is_killed() {
            // Zero linger: closing the socket then sends RST instead of FIN.
            let _ = self.inner.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection dropped by an injected reset fault",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A [`TcpListener`] whose connections can be dropped by handlers; use it
/// with `axum::serve` and `into_make_service_with_connect_info::<ConnCtx>()`.
#[derive(Debug)]
pub struct KillableListener {
    /// The bound socket.
    inner: TcpListener,
}

impl KillableListener {
    /// Wraps a bound listener.
    #[must_use]
    pub fn new(inner: TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // Same error handling as axum's own listener: retry, pausing on
        // resource exhaustion.
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let io = KillableStream {
            inner: stream,
            switch: Arc::new(KillSwitch::default()),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Per-connection context a handler finds in the request extensions
/// (`ConnectInfo<ConnCtx>`).
#[derive(Debug, Clone)]
pub struct ConnCtx {
    /// The peer's address.
    pub remote: SocketAddr,
    /// Drops this connection when killed.
    pub switch: Arc<KillSwitch>,
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnCtx {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        Self {
            remote: *stream.remote_addr(),
            switch: Arc::clone(&stream.io().switch),
        }
    }
}
