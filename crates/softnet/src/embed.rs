//! softnet embedded in a program: the daemon started from its TOML
//! configuration (devices, addresses, routes, pf, the control socket so
//! that `softnet netstat`, `pfctl` and the other admin commands work
//! against the program), its control loop on a thread of its own, and the
//! stack handed to the program for `softnet_core::sock::api`'s sockets.

use crate::config::Config;
use crate::daemon::{init_logging, preflight, Daemon};
use softnet_core::stack::Stack;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// A running embedded router.
pub struct Embedded {
    stack: Arc<Stack>,
    control: JoinHandle<()>,
}

impl Embedded {
    /// Reads `path` as `softnet up -c` does and starts the router. `log`
    /// overrides the configuration's log level.
    pub fn start(path: &Path, log: Option<&str>) -> anyhow::Result<Embedded> {
        let config = Config::load(path)?;
        init_logging(log.unwrap_or(&config.log), config.log_json);
        preflight(&config)?;
        let d = Daemon::start(config)?;
        let stack = d.stack();
        let control = std::thread::Builder::new().name("softnet-control".into()).spawn(move || d.run())?;
        Ok(Embedded { stack, control })
    }

    /// The stack, for `TcpListener::bind(embedded.stack(), ...)`.
    pub fn stack(&self) -> &Arc<Stack> {
        &self.stack
    }

    /// Waits until the router stops (SIGTERM or SIGINT, as the daemon).
    pub fn wait(self) {
        let _ = self.control.join();
    }
}
