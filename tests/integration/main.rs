//! Integration tests: every test talks to a real RabbitMQ broker (a private
//! node dlab starts for this test binary, or `DLAB_AMQP_URL`) or to a real
//! private Postfix relay (root and the postfix package), and worker
//! processes really abort.

mod cli;
mod cluster;
mod eavesdrop;
mod esmtp;
mod explain;
mod faults;
mod guarantees;
mod inbox;
mod interrupt;
mod leftovers;
mod matrix_full;
mod newuser;
mod node;
mod promises;
mod promises_cli;
mod push;
mod relay;
mod report;
mod smtp_proxy;
mod smtp_runs;
mod support;
mod wire_tls;
