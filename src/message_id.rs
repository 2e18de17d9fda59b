//! Message IDs: one per notification, from the moment it is intended.
//!
//! An ID is `<run>-<seq>`: the run's short random ID and the message's number
//! in `0..intended`. It travels as the AMQP `message_id` and is the key of the
//! effect store, so anyone can recount a run with `sqlite3`.

/// A run's short random ID (8 hex digits).
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}

/// The message ID of message `seq` in run `run`.
pub fn format(run: &str, seq: u64) -> String {
    format!("{run}-{seq}")
}

/// The message number in `id` if it belongs to run `run`.
pub fn parse(run: &str, id: &str) -> Option<u64> {
    let rest = id.strip_prefix(run)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_ids_do_not_parse() {
        let run = new_run_id();
        assert_eq!(run.len(), 8);
        assert_eq!(parse(&run, &format(&run, 42)), Some(42));
        assert_eq!(
            parse(&run, "deadbeef-1"),
            if run == "deadbeef" { Some(1) } else { None }
        );
        assert_eq!(parse(&run, &format!("{run}-")), None);
        assert_eq!(parse(&run, &format!("{run}-+1")), None);
        assert_eq!(parse(&run, &format!("{run}x-1")), None);
    }
}
