//! Integration tests: every test talks to a real RabbitMQ broker (a private
//! node dlab starts for this test binary, or `DLAB_AMQP_URL`), and worker
//! processes really abort.

mod cli;
mod faults;
mod guarantees;
mod inbox;
mod node;
mod relay;
mod report;
mod smtp_proxy;
mod support;
