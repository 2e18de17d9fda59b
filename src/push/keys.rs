//! The gateway's idempotency-key memory: what it answered for each
//! `Idempotency-Key`, for `key_ttl`, and which keys have a first request
//! still running.
//!
//! Keys live in memory ([`KeyStore::Memory`]: lost when the gateway
//! restarts) or on disk ([`KeyStore::Disk`]: the effect store's `push_keys`
//! table, committed with the effect, honoured with the same TTL). In both,
//! the in-flight markers are here, in memory. An expired key is *forgotten*:
//! a distinct outcome, so the gateway can count retries that came too late,
//! and otherwise treated as unknown.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Where the gateway remembers idempotency keys.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyStore {
    /// In the gateway's memory: a restart forgets every key.
    #[default]
    Memory,
    /// In the effect store, in the transaction of the key's effect: a
    /// restart forgets nothing.
    Disk,
}

/// What is known of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Its first request is still running.
    InFlight,
    /// Its first request was answered with `response` at `at`.
    Done {
        /// The body of the first answer, returned again to a replay.
        response: String,
        /// When the first answer was remembered.
        at: Instant,
    },
}

/// What a [`Keys::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Never seen (or forgotten by a restart): now marked in flight.
    New(Claim),
    /// Seen, but longer ago than the TTL: forgotten, now marked in flight.
    Expired(Claim),
    /// Its first request is still running.
    InFlight,
    /// Answered within the TTL: this response is the answer again.
    Done(String),
}

/// The proof that a key was marked in flight, to be handed back to
/// [`Keys::finish`]. A claim made before [`Keys::forget_all`] finishes nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    key: String,
    epoch: u64,
}

/// The keys in memory. Every key of a run is kept (an expired one is still
/// told apart from an unknown one); a run is bounded, so is this.
#[derive(Debug)]
pub struct Keys {
    map: HashMap<String, Entry>,
    ttl: Duration,
    /// Bumped by every [`Keys::forget_all`].
    epoch: u64,
}

impl Keys {
    /// An empty memory whose answers are remembered for `ttl`.
    pub fn new(ttl: Duration) -> Keys {
        Keys {
            map: HashMap::new(),
            ttl,
            epoch: 0,
        }
    }

    /// Looks `key` up at `now`; unknown or expired, it is marked in flight
    /// (check and mark are one step: two requests cannot both claim it).
    pub fn claim(&mut self, key: &str, now: Instant) -> Lookup {
        let expired = match self.map.get(key) {
            None => false,
            Some(Entry::InFlight) => return Lookup::InFlight,
            Some(Entry::Done { response, at }) => {
                if now.saturating_duration_since(*at) <= self.ttl {
                    return Lookup::Done(response.clone());
                }
                true
            }
        };
        self.map.insert(key.to_string(), Entry::InFlight);
        let claim = Claim {
            key: key.to_string(),
            epoch: self.epoch,
        };
        if expired {
            Lookup::Expired(claim)
        } else {
            Lookup::New(claim)
        }
    }

    /// Ends a claim: with `Some(response)` the key is remembered as answered
    /// at `now`; with `None` (the request failed, or the answer is kept on
    /// disk) its in-flight marker is removed. A claim from before the last
    /// [`Keys::forget_all`] changes nothing.
    pub fn finish(&mut self, claim: Claim, response: Option<String>, now: Instant) {
        if claim.epoch != self.epoch {
            return;
        }
        match response {
            Some(response) => {
                self.map
                    .insert(claim.key, Entry::Done { response, at: now });
            }
            None => {
                self.map.remove(&claim.key);
            }
        }
    }

    /// Forgets every key and in-flight marker, as a restart does.
    pub fn forget_all(&mut self) {
        self.map.clear();
        self.epoch += 1;
    }

    /// What is known of `key`, if anything.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.map.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(l: Lookup) -> Claim {
        match l {
            Lookup::New(c) | Lookup::Expired(c) => c,
            other => panic!("not claimed: {other:?}"),
        }
    }

    #[test]
    fn a_key_is_in_flight_until_finished_then_replayed_until_it_expires() {
        let t0 = Instant::now();
        let mut keys = Keys::new(Duration::from_secs(10));
        let c = claimed(keys.claim("k", t0));
        assert_eq!(keys.claim("k", t0), Lookup::InFlight);
        keys.finish(c, Some("body".into()), t0);
        let t5 = t0 + Duration::from_secs(5);
        assert_eq!(keys.claim("k", t5), Lookup::Done("body".into()));
        let t11 = t0 + Duration::from_secs(11);
        assert!(matches!(keys.claim("k", t11), Lookup::Expired(_)));
        assert_eq!(keys.get("k"), Some(&Entry::InFlight));
    }

    #[test]
    fn a_failed_request_leaves_its_key_unknown() {
        let t0 = Instant::now();
        let mut keys = Keys::new(Duration::from_secs(10));
        let c = claimed(keys.claim("k", t0));
        keys.finish(c, None, t0);
        assert_eq!(keys.get("k"), None);
        assert!(matches!(keys.claim("k", t0), Lookup::New(_)));
    }

    #[test]
    fn a_restart_forgets_keys_and_ignores_claims_made_before_it() {
        let t0 = Instant::now();
        let mut keys = Keys::new(Duration::from_secs(10));
        let done = claimed(keys.claim("a", t0));
        keys.finish(done, Some("a".into()), t0);
        let running = claimed(keys.claim("b", t0));
        keys.forget_all();
        assert!(matches!(keys.claim("a", t0), Lookup::New(_)));
        let again = claimed(keys.claim("b", t0));
        keys.finish(running, Some("old".into()), t0);
        assert_eq!(keys.get("b"), Some(&Entry::InFlight));
        keys.finish(again, Some("new".into()), t0);
        assert_eq!(keys.claim("b", t0), Lookup::Done("new".into()));
    }

    #[test]
    fn key_stores_are_named_in_kebab_case() {
        let disk: KeyStore = serde_json::from_str("\"disk\"").unwrap();
        assert_eq!(disk, KeyStore::Disk);
        assert_eq!(
            serde_json::to_string(&KeyStore::Memory).unwrap(),
            "\"memory\""
        );
    }
}
