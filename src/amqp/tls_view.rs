//! The broker's own account of the workers' TLS: `rabbitmqctl
//! list_connections` of the run's connections (those named `dlab
//! producer|consumer N run ID`), asked while they are open, with what
//! RabbitMQ says of each: TLS or not, the protocol version, the subject of
//! the client certificate it verified, the user and the SASL mechanism.
//! (The management API lists a connection only after a statistics round,
//! too late for a short run; the CLI asks the connection processes.)

use crate::broker::NodeState;
use crate::report::eavesdrop::TlsConnection;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The name a client gave its connection: `client_properties` holds
/// `["connection_name", "longstr", NAME]`.
fn connection_name(c: &serde_json::Value) -> Option<&str> {
    c["client_properties"]
        .as_array()?
        .iter()
        .find(|p| p[0] == "connection_name")?[2]
        .as_str()
}

/// The run's worker connections in `rabbitmqctl`'s JSON list.
pub fn parse(v: &serde_json::Value, run_id: &str) -> Vec<TlsConnection> {
    let suffix = format!(" run {run_id}");
    let text = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
    let mut out: Vec<TlsConnection> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c, connection_name(c)?.strip_suffix(&suffix)?)))
        .map(|(c, name)| TlsConnection {
            client: name.to_string(),
            tls: c["ssl"].as_bool().unwrap_or(false),
            protocol: text(c, "ssl_protocol"),
            peer_cert_subject: text(c, "peer_cert_subject"),
            user: text(c, "user"),
            auth_mechanism: text(c, "auth_mechanism"),
        })
        .collect();
    out.sort_by(|a, b| a.client.cmp(&b.client));
    out
}

/// Asks the node until it lists `workers` connections of the run (ten
/// times at most, each a `rabbitmqctl` call of about a second); ends with
/// the longest list it got.
pub fn watch(node: NodeState, run_id: String, workers: usize) -> JoinHandle<Vec<TlsConnection>> {
    tokio::spawn(async move {
        let mut best = Vec::new();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let args = [
                "list_connections",
                "client_properties",
                "ssl",
                "ssl_protocol",
                "peer_cert_subject",
                "user",
                "auth_mechanism",
                "--formatter",
                "json",
            ];
            let Ok(out) = node.ctl("rabbitmqctl", &args).await else {
                continue;
            };
            let seen = serde_json::from_str(&out)
                .map(|v| parse(&v, &run_id))
                .unwrap_or_default();
            if seen.len() > best.len() {
                best = seen;
            }
            if best.len() >= workers {
                break;
            }
        }
        best
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_run_s_connections_only() {
        let named = |n: &str| {
            serde_json::json!([
                ["platform", "longstr", "rust"],
                ["connection_name", "longstr", n]
            ])
        };
        let v = serde_json::json!([
            {"client_properties": named("dlab producer 0 run ab12"), "ssl": true, "ssl_protocol": "tlsv1.3",
             "peer_cert_subject": "CN=producer,O=dlab", "user": "guest", "auth_mechanism": "PLAIN"},
            {"client_properties": named("dlab runner ab12"), "ssl": false},
            {"client_properties": named("dlab consumer 0 run ffff"), "ssl": true}
        ]);
        let got = parse(&v, "ab12");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].client, "dlab producer 0");
        assert_eq!(got[0].peer_cert_subject, "CN=producer,O=dlab");
    }
}
