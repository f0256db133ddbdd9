//! SIGINT and SIGTERM. By default `main` drops the command's future on the first one (a staged
//! write discards itself) and exits 130 or 143. A command that can stop cleanly and say what it
//! did (`run`) calls [`listen`] first: `main` then hands it the first signal instead, waits for
//! it to finish, and only a second signal drops it at once.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::exit;

/// A signal that ends the command, and the exit status a shell would report for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Interrupt {
    /// `SIGINT`, `SIGTERM` (`Ctrl-C` off Unix).
    pub(crate) name: &'static str,
    /// 130 or 143.
    pub(crate) exit: u8,
}

/// The first signal, for a command that listens.
fn channel() -> &'static watch::Sender<Option<Interrupt>> {
    static STOP: OnceLock<watch::Sender<Option<Interrupt>>> = OnceLock::new();
    STOP.get_or_init(|| watch::channel(None).0)
}

/// Whether a command listens (see [`listen`]).
static LISTENING: AtomicBool = AtomicBool::new(false);

/// Asks for the first signal: from now on `main` does not drop the command on it but hands it to
/// the returned [`Stop`]. Call it once the command has something worth stopping cleanly.
pub(crate) fn listen() -> Stop {
    let receiver = channel().subscribe();
    LISTENING.store(true, Ordering::SeqCst);
    Stop(receiver)
}

/// Hands `signal` to a listening command; false when none listens (the caller then drops it).
pub(crate) fn deliver(signal: Interrupt) -> bool {
    if !LISTENING.load(Ordering::SeqCst) {
        return false;
    }
    channel().send_replace(Some(signal));
    true
}

/// Where a listening command learns of the first signal.
#[derive(Debug)]
pub(crate) struct Stop(watch::Receiver<Option<Interrupt>>);

impl Stop {
    /// Resolves with the first signal; never, if none comes.
    pub(crate) async fn requested(&mut self) -> Interrupt {
        match self.0.wait_for(Option::is_some).await {
            Ok(signal) => signal.unwrap_or(Interrupt { name: "SIGINT", exit: exit::INTERRUPTED }),
            // The sender lives in a static: it is never dropped.
            Err(_) => std::future::pending().await,
        }
    }
}

/// SIGINT and SIGTERM as a stream of [`Interrupt`]s.
#[derive(Debug)]
pub(crate) struct Signals {
    #[cfg(unix)]
    handlers: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Installs the handlers. If they cannot be installed, [`next`](Self::next) never resolves
    /// (the default disposition then applies).
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let handlers = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                (Ok(int), Ok(term)) => Some((int, term)),
                _ => None,
            };
            Self { handlers }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGINT (Ctrl-C) or SIGTERM.
    #[cfg(unix)]
    pub(crate) async fn next(&mut self) -> Interrupt {
        let Some((int, term)) = self.handlers.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => Interrupt { name: "SIGINT", exit: exit::INTERRUPTED },
            _ = term.recv() => Interrupt { name: "SIGTERM", exit: exit::TERMINATED },
        }
    }

    /// The next Ctrl-C.
    #[cfg(not(unix))]
    pub(crate) async fn next(&mut self) -> Interrupt {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Interrupt { name: "Ctrl-C", exit: exit::INTERRUPTED },
            Err(_) => std::future::pending().await,
        }
    }
}
