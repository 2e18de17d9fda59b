//! What a run with `effect = "push"` adds to an AMQP run: dlab's push gateway
//! (the phone's push service) writing effects into the run's effect store, a
//! fault proxy in front of it that the consumers call through, and after the
//! run the push section of the report: what the consumers saw, what the
//! gateway counted, and its access log recounted beside the effect store.

use crate::proxy::{Protocol, Proxy};
use crate::push::access_log;
use crate::push::gateway::{Gateway, GatewayConfig};
use crate::report::{PushCalls, PushReport};
use crate::runner::engine::Setup;
use crate::runner::RunError;
use crate::scenario::PushPlan;
use std::path::PathBuf;
use std::sync::Arc;

/// The push hop of one run.
pub struct PushUse {
    gateway: Arc<Gateway>,
    url: String,
    access_log: PathBuf,
    plan: PushPlan,
}

/// The access log's file name in the run directory.
pub const ACCESS_LOG: &str = "push-access.log";

impl PushUse {
    /// Starts the gateway on a free loopback port and its proxy; returns
    /// the proxy for the run's links. With `tls` (the lab CA's directory,
    /// and whether TLS is mutual) the gateway speaks HTTPS.
    pub async fn start(
        s: &Setup<'_>,
        plan: PushPlan,
        tls: Option<(&std::path::Path, bool)>,
    ) -> Result<(PushUse, Proxy), RunError> {
        let access_log = s.run_dir.join(ACCESS_LOG);
        let tls = match tls {
            Some((dir, mutual)) => Some(Arc::new(
                crate::tls::server_config(
                    &crate::tls::server_identity(dir),
                    mutual.then(|| dir.join("ca.pem")).as_deref(),
                )
                .map_err(|e| RunError::Unsupported(format!("the push gateway's TLS: {e}")))?,
            )),
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let gateway = Gateway::start(GatewayConfig {
            addr: ([127, 0, 0, 1], 0).into(),
            store: Some(s.store.to_path_buf()),
            key_ttl: plan.key_ttl,
            key_store: plan.key_store,
            access_log: Some(access_log.clone()),
            tls,
        })
        .await
        .map_err(RunError::io("cannot start the push gateway"))?;
        let proxy = Proxy::start(gateway.addr(), Protocol::Http, s.plan.seed ^ 2)
            .await
            .map_err(RunError::io("cannot start the push gateway's fault proxy"))?;
        let url = format!("{scheme}://{}/v1/push", proxy.addr());
        Ok((
            PushUse {
                gateway: Arc::new(gateway),
                url,
                access_log,
                plan,
            },
            proxy,
        ))
    }

    /// The URL consumers call (through the proxy).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The gateway, for the fault driver.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The push section: the consumers' calls, the gateway's own counters,
    /// and its access log recounted, beside the effect store's rows.
    pub fn report(&self, calls: &PushCalls, effect_rows: u64) -> PushReport {
        self.gateway.flush_log();
        let log = access_log::recount(&self.access_log);
        PushReport::new(
            &self.plan,
            calls.clone(),
            self.gateway.stats(),
            log.map_err(|e| format!("{}: {e}", self.access_log.display())),
            self.access_log.display().to_string(),
            effect_rows,
        )
    }
}
