//! Network partitions between the members of a cluster, made with an
//! nftables table of dlab's own: each member's Erlang distribution listens
//! and connects only on its own loopback address, so dropping the packets
//! between two addresses cuts exactly the link between two nodes. Clients
//! (from 127.0.0.1) and dlab's own questions to every node still get
//! through.
//!
//! Architecture invariant: the table is named after its cluster and listed
//! in the cluster's record before it is created, so that a dlab killed in
//! the middle of a partition leaves a record of what to delete
//! (`crate::leftovers`); healing deletes the whole table.

use crate::scenario::PartitionShape;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// nftables' command line tool (Debian's `nftables` package).
pub const NFT: &str = "/usr/sbin/nft";

/// The pairs of members (0-based) whose link `shape` cuts, for `n`
/// members; `target` is the member an `isolate` cuts off, and the bridge of
/// a `bridge` (the cut link is the first one that does not touch it).
pub fn cuts(shape: PartitionShape, n: usize, target: usize) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let cut = match shape {
                PartitionShape::Isolate => a == target || b == target,
                PartitionShape::Halves => (a < n / 2) != (b < n / 2),
                PartitionShape::Bridge => a != target && b != target && cuts.is_empty(),
                PartitionShape::Clients => false,
            };
            if cut {
                cuts.push((a, b));
            }
        }
    }
    cuts
}

/// Whether nftables can be used here (installed, and dlab may change the
/// ruleset: root).
pub fn available() -> Result<(), String> {
    if !std::path::Path::new(NFT).exists() {
        return Err(format!(
            "partitions need nftables ({NFT} is missing). Try: `scripts/install-deps` (installs Debian's nftables)"
        ));
    }
    let out = Command::new(NFT)
        .args(["list", "tables"])
        .output()
        .map_err(|e| format!("cannot run {NFT}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "partitions need permission to change nftables rules (root, or CAP_NET_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {NFT}: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| format!("cannot write to {NFT}: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{NFT} failed: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{NFT} refused the partition: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The nftables script that drops every packet between the two addresses
/// of each cut link, both ways, and every packet to and from each of
/// `ports` on 127.0.0.1 (a member's AMQP port: its clients cut off), in
/// table `inet NAME`.
pub fn script(table: &str, cut: &[(Ipv4Addr, Ipv4Addr)], ports: &[u16]) -> String {
    let mut s = format!(
        "table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n"
    );
    for (a, b) in cut {
        s.push_str(&format!("    ip saddr {a} ip daddr {b} drop\n"));
        s.push_str(&format!("    ip saddr {b} ip daddr {a} drop\n"));
    }
    for p in ports {
        s.push_str(&format!("    ip daddr 127.0.0.1 tcp dport {p} drop\n"));
        s.push_str(&format!("    ip daddr 127.0.0.1 tcp sport {p} drop\n"));
    }
    s.push_str("  }\n}\n");
    s
}

/// Cuts the links between these address pairs and the clients of these
/// ports (replacing any earlier cut of this table).
pub fn cut(table: &str, links: &[(Ipv4Addr, Ipv4Addr)], ports: &[u16]) -> Result<(), String> {
    heal(table);
    nft(&script(table, links, ports))
}

/// Deletes the table: every link of the cluster is whole again. Quiet when
/// there is no such table.
pub fn heal(table: &str) -> bool {
    on_table("delete", table)
}

/// Whether the table exists.
pub fn exists(table: &str) -> bool {
    on_table("list", table)
}

/// `nft VERB table inet TABLE`, quietly: whether it succeeded.
fn on_table(verb: &str, table: &str) -> bool {
    Command::new(NFT)
        .args([verb, "table", "inet", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shape_cuts_the_links_it_names() {
        use PartitionShape::*;
        assert_eq!(cuts(Isolate, 3, 2), [(0, 2), (1, 2)]);
        assert_eq!(cuts(Isolate, 3, 0), [(0, 1), (0, 2)]);
        assert_eq!(cuts(Halves, 3, 0), [(0, 1), (0, 2)]);
        assert_eq!(cuts(Halves, 4, 0), [(0, 2), (0, 3), (1, 2), (1, 3)]);
        // Member 1 is the bridge: it still sees 0 and 2, which do not see each other.
        assert_eq!(cuts(Bridge, 3, 1), [(0, 2)]);
        assert_eq!(cuts(Bridge, 3, 0), [(1, 2)]);
        assert!(
            cuts(Clients, 3, 1).is_empty(),
            "the members still see each other"
        );
    }

    #[test]
    fn the_script_drops_both_ways_of_each_cut_link() {
        let a = Ipv4Addr::new(127, 9, 9, 1);
        let b = Ipv4Addr::new(127, 9, 9, 3);
        let s = script("dlab_x", &[(a, b)], &[5701]);
        assert!(s.contains("ip daddr 127.0.0.1 tcp dport 5701 drop"));
        assert!(s.contains("ip daddr 127.0.0.1 tcp sport 5701 drop"));
        assert!(s.starts_with("table inet dlab_x {"), "{s}");
        assert!(s.contains("ip saddr 127.9.9.1 ip daddr 127.9.9.3 drop"));
        assert!(s.contains("ip saddr 127.9.9.3 ip daddr 127.9.9.1 drop"));
        assert!(s.contains("hook input"));
    }
}
