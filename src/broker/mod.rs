//! Which broker a run talks to, and the private nodes dlab starts itself.
//!
//! Resolution order: an explicit URL (`--amqp-url` / `DLAB_AMQP_URL`), then the
//! node `dlab up` started (if it is alive), then a node started on demand for
//! this command alone and stopped (and its directory removed) afterwards.

pub mod management;
pub mod node;
mod ports;

pub use management::{Counters, Management, QueueInfo};
pub use node::{Node, NodeError, NodeState};
pub use ports::free_port;
use std::sync::Arc;

use std::path::{Path, PathBuf};

/// Where dlab keeps its nodes and runs: `$DLAB_HOME`, or `.dlab` in the working directory.
pub fn home() -> PathBuf {
    std::env::var_os("DLAB_HOME").map_or_else(|| PathBuf::from(".dlab"), PathBuf::from)
}

/// The directory of the node `dlab up` manages.
pub fn up_dir(home: &Path) -> PathBuf {
    home.join("broker")
}

/// The broker a command uses, and whether this command must stop it.
#[derive(Debug)]
pub struct BrokerHandle {
    url: String,
    node: Option<Arc<Node>>,
    owned: bool,
}

impl BrokerHandle {
    /// Picks (or starts) the broker. `notify` is told when a node is being started.
    pub async fn resolve(
        explicit: Option<String>,
        home: &Path,
        notify: impl Fn(&str),
    ) -> Result<BrokerHandle, NodeError> {
        if let Some(url) = explicit {
            return Ok(BrokerHandle {
                url,
                node: None,
                owned: false,
            });
        }
        if let Some(state) = NodeState::load(&up_dir(home)).filter(NodeState::alive) {
            return Ok(BrokerHandle {
                url: state.url(),
                node: Some(Node::new(state)),
                owned: false,
            });
        }
        let dir = home.join("nodes").join(crate::message_id::new_run_id());
        notify(&format!(
            "dlab: starting a private RabbitMQ node in {} (use `dlab up` to keep one running, or --amqp-url)",
            dir.display()
        ));
        let state = node::start(&dir).await?;
        Ok(BrokerHandle {
            url: state.url(),
            node: Some(Node::own(state)),
            owned: true,
        })
    }

    /// The AMQP URL (with its password; mask it before printing).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The private node, when the broker is one of dlab's.
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    /// Stops the node and removes its directory if this command started it
    /// (as dropping the last handle on it would).
    pub fn shutdown(self) {
        if let (true, Some(node)) = (self.owned, &self.node) {
            node.retire();
        }
    }
}
