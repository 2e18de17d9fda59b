//! A run's servers: named parts (RabbitMQ nodes, Postfix relays, dlab's
//! inbox, dlab's push gateway) that faults aim at.
//!
//! A transport lists the servers it started or attached to; the fault driver
//! finds its target here by kind (and, once a scenario can name one, by
//! name), so a run with several nodes needs no second copy of anything.

use crate::broker::Node;
use crate::cluster::Cluster;
use crate::push::gateway::Gateway;
use crate::relay::Relay;
use crate::smtp::inbox::Inbox;
use std::sync::Arc;

/// What a server is.
#[derive(Clone)]
pub enum Part {
    /// A RabbitMQ node dlab started (its Erlang VM is dlab's process).
    Node(Arc<Node>),
    /// A Postfix relay dlab started or attached to.
    Relay(Arc<Relay>),
    /// dlab's own SMTP server, the phone.
    Inbox(Arc<Inbox>),
    /// A RabbitMQ cluster dlab started: node faults and partitions aim at
    /// its members.
    Cluster(Arc<Cluster>),
    /// dlab's push gateway, the phone's push service.
    Gateway(Arc<Gateway>),
}

/// One named server of a run.
#[derive(Clone)]
pub struct Server {
    /// Its name in timelines and fault records, e.g. `node`, `relay`, `inbox`.
    pub name: String,
    /// What it is.
    pub part: Part,
}

/// Every server of a run, in the order the transport listed them.
#[derive(Clone, Default)]
pub struct Servers(Vec<Server>);

impl Servers {
    /// No servers dlab can act on (an external broker or relay).
    pub fn none() -> Servers {
        Servers::default()
    }

    /// Adds a server.
    pub fn add(&mut self, name: impl Into<String>, part: Part) {
        self.0.push(Server {
            name: name.into(),
            part,
        });
    }

    /// Every server.
    pub fn iter(&self) -> impl Iterator<Item = &Server> {
        self.0.iter()
    }

    /// The first RabbitMQ node (the one broker faults aim at).
    pub fn node(&self) -> Option<&Arc<Node>> {
        self.0.iter().find_map(|s| match &s.part {
            Part::Node(n) => Some(n),
            _ => None,
        })
    }

    /// The first relay.
    pub fn relay(&self) -> Option<&Arc<Relay>> {
        self.0.iter().find_map(|s| match &s.part {
            Part::Relay(r) => Some(r),
            _ => None,
        })
    }

    /// The inbox.
    pub fn inbox(&self) -> Option<&Arc<Inbox>> {
        self.0.iter().find_map(|s| match &s.part {
            Part::Inbox(i) => Some(i),
            _ => None,
        })
    }

    /// The cluster.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.0.iter().find_map(|s| match &s.part {
            Part::Cluster(c) => Some(c),
            _ => None,
        })
    }

    /// The push gateway.
    pub fn gateway(&self) -> Option<&Arc<Gateway>> {
        self.0.iter().find_map(|s| match &s.part {
            Part::Gateway(g) => Some(g),
            _ => None,
        })
    }

    /// The server called `name`.
    pub fn named(&self, name: &str) -> Option<&Server> {
        self.0.iter().find(|s| s.name == name)
    }
}
