//! Idempotent inserts: what a client's `Idempotency-Key` is ([`IdempotencyKey`]), what a
//! request under it is ([`Fingerprint`], [`Idempotency`]), and what it is answered with
//! ([`Inserted`]). The writer's backends store each key with its request's rows, in the
//! same transaction, under the table's unique key (`sqlite::keys`, `pg::keys`): the store
//! itself decides which request under a key was first, across threads, processes and
//! hosts.
//!
//! A *key* is the client's name for one logical insert; a *retry* is a request under a
//! key already committed. A retry of the same request (same fingerprint) stores nothing
//! and gets the first answer again (the same ids); under a key committed with another
//! request it gets `WriteError::KeyReused`. A key whose first request has been
//! submitted but not answered yet is *in flight*: a second request under it is refused
//! ([`super::SubmitError::KeyInFlight`], `WriteError::KeyInFlight`) rather than held.
//! Keys expire after the writer's `idempotency_ttl`; the writer purges expired ones a
//! bounded number at a time (`PurgeSchedule`).
//!
//! This follows the IETF httpapi draft "The Idempotency-Key HTTP Header Field" and
//! Stripe's API: key plus request fingerprint plus the stored response; same key and
//! payload: the stored response; other payload: 422; first request still running: 409.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::ticket::MegaTicket;

/// The longest key accepted, in characters (Stripe's limit; a UUID is 36).
pub const KEY_MAX_LEN: usize = 255;

/// Expired keys deleted per purge statement: bounds the work added to one commit.
pub(crate) const PURGE_LIMIT: usize = 1000;

/// Time between purges while the previous one found fewer than [`PURGE_LIMIT`] keys.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// A validated `Idempotency-Key`: 1 to [`KEY_MAX_LEN`] visible ASCII characters, no
/// quote or backslash (so the key needs no escaping anywhere it is shown).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a header value is not an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The value is empty (or only `""`).
    #[error("the Idempotency-Key is empty: send 1 to 255 visible ASCII characters")]
    Empty,
    /// The value is longer than [`KEY_MAX_LEN`].
    #[error("the Idempotency-Key is {len} characters long; at most 255 are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The value holds a character outside the allowed set.
    #[error(
        "the Idempotency-Key holds {found} at position {position}: only visible ASCII \
         characters are allowed, without spaces, quotes or backslashes"
    )]
    BadCharacter {
        /// The character, escaped (`'\x07'`, `' '`).
        found: String,
        /// Its 1-based byte position.
        position: usize,
    },
}

impl IdempotencyKey {
    /// Validates a header value. One pair of surrounding double quotes is dropped: the
    /// IETF draft writes the key as a structured-field string (`"8e03978e-..."`), most
    /// clients send it bare.
    pub fn parse(raw: &[u8]) -> Result<Self, KeyError> {
        let inner = match raw {
            [b'"', inner @ .., b'"'] => inner,
            other => other,
        };
        if inner.is_empty() {
            return Err(KeyError::Empty);
        }
        if inner.len() > KEY_MAX_LEN {
            return Err(KeyError::TooLong { len: inner.len() });
        }
        if let Some(position) = inner
            .iter()
            .position(|&b| !b.is_ascii_graphic() || b == b'"' || b == b'\\')
        {
            return Err(KeyError::BadCharacter {
                found: format!("'{}'", inner[position].escape_ascii()),
                position: position + 1,
            });
        }
        // Only ASCII bytes are left, so this cannot fail.
        let key = String::from_utf8_lossy(inner).into_owned();
        Ok(Self(key))
    }

    /// The key as sent (without surrounding quotes).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A digest of what a request asks for, to tell a retry from a different request
/// under the same key. Computed over the validated tickets, not the raw body: the same
/// tickets in other JSON spacing or field order are the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// SHA-256 over `route` (so one key cannot be a single insert and a batch at once)
    /// and every ticket's numbers in order. A stable digest: stored keys outlive the
    /// process, and may be checked by another build.
    pub fn of(route: &str, tickets: &[MegaTicket]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(route.as_bytes());
        hasher.update([0]);
        for ticket in tickets {
            hasher.update(ticket.numbers());
        }
        Self(hasher.finalize().into())
    }

    /// The digest's bytes, as stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What makes a request idempotent: its key, its fingerprint, and the status its
/// first success is answered with (stored, so a retry is answered with it again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's key.
    pub key: IdempotencyKey,
    /// What the request asks for.
    pub fingerprint: Fingerprint,
    /// The status of the first answer (the service's 201).
    pub status: u16,
}

/// What a request the writer handled is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The rows were committed now; their ids, in submission order.
    Stored(Vec<i64>),
    /// A retry of a request committed earlier under the same key: nothing was stored;
    /// the first request's ids and status.
    Replayed {
        /// The ids the first request got.
        ids: Vec<i64>,
        /// The status the first request was answered with.
        status: u16,
    },
}

impl Inserted {
    /// The ids, stored now or replayed.
    pub fn ids(&self) -> &[i64] {
        match self {
            Inserted::Stored(ids) | Inserted::Replayed { ids, .. } => ids,
        }
    }

    /// The ids, by value.
    pub fn into_ids(self) -> Vec<i64> {
        match self {
            Inserted::Stored(ids) | Inserted::Replayed { ids, .. } => ids,
        }
    }
}

/// A key's record as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredKey {
    /// The first request's fingerprint.
    pub fingerprint: Vec<u8>,
    /// The first request's status.
    pub status: u16,
    /// The first request's ids, as [`encode_ids`] wrote them.
    pub ids: String,
}

/// Why a retry under a stored key is not replayed. Its own type, not the backend's
/// `WriteError` (which converts from it), so this module imports nothing of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The key was first used with another request body.
    KeyReused,
    /// The stored answer cannot be read back.
    Unreadable(String),
}

impl StoredKey {
    /// What `request`, a retry under this key, is answered with.
    pub(crate) fn answer(&self, request: &Idempotency) -> Result<Inserted, Refused> {
        if self.fingerprint != request.fingerprint.as_bytes() {
            return Err(Refused::KeyReused);
        }
        let ids = decode_ids(&self.ids).ok_or_else(|| {
            Refused::Unreadable(format!(
                "the stored ids of Idempotency-Key {} are unreadable",
                request.key.as_str()
            ))
        })?;
        Ok(Inserted::Replayed {
            ids,
            status: self.status,
        })
    }
}

/// Writes ids compactly: runs of consecutive ids as `first-last`, separated by commas
/// (a batch's ids are mostly one run, so a 10,000-row batch stores a few bytes).
pub(crate) fn encode_ids(ids: &[i64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ids.len() {
        let mut j = i;
        while j + 1 < ids.len() && ids[j].checked_add(1) == Some(ids[j + 1]) {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j == i {
            out.push_str(&ids[i].to_string());
        } else {
            out.push_str(&format!("{}-{}", ids[i], ids[j]));
        }
        i = j + 1;
    }
    out
}

/// Reads what [`encode_ids`] wrote; `None` if it is not that.
pub(crate) fn decode_ids(text: &str) -> Option<Vec<i64>> {
    let mut ids = Vec::new();
    for part in text.split(',') {
        // Ids are positive, so a '-' inside a part is always the range's separator.
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (i64, i64) = (first.parse().ok()?, last.parse().ok()?);
                if last < first {
                    return None;
                }
                ids.extend(first..=last);
            }
            None => ids.push(part.parse().ok()?),
        }
    }
    Some(ids)
}

/// For each request of a batch, whether an earlier request of the same batch holds its
/// key: that earlier one is still in flight (not committed), so this one is refused.
pub(crate) fn repeats_in<'a>(keys: impl Iterator<Item = Option<&'a Idempotency>>) -> Vec<bool> {
    let mut seen = HashSet::new();
    keys.map(|key| key.is_some_and(|k| !seen.insert(k.key.as_str())))
        .collect()
}

/// The keys of this process's requests submitted and not yet answered. A request
/// under a key in here is refused at once, whichever shard it came through: its first
/// request may still commit, and holding the second until then would hold a client's
/// connection on another's behalf.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// Held only to insert or remove one key: no I/O under it.
    keys: Mutex<HashSet<String>>,
}

impl InFlight {
    /// Marks `key` in flight; false if it already was.
    pub(crate) fn claim(&self, key: &IdempotencyKey) -> bool {
        self.lock().insert(key.as_str().to_owned())
    }

    /// Marks `key` answered. The writer calls it after the commit and before replying,
    /// so a client that retries the moment it is answered finds the key committed.
    pub(crate) fn release(&self, key: &IdempotencyKey) {
        self.lock().remove(key.as_str());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic while holding the lock cannot leave the set half-changed (one insert
        // or remove), so a poisoned lock is still usable.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// When the writer purges expired keys: once a second, or after every commit while
/// the last purge found a full [`PURGE_LIMIT`] (a backlog), so the work per commit
/// stays bounded and the table does not grow without limit.
#[derive(Debug)]
pub(crate) struct PurgeSchedule {
    next: Instant,
}

impl PurgeSchedule {
    /// A schedule whose first purge is due at once (keys may have expired while the
    /// process was down).
    pub(crate) fn new() -> Self {
        Self {
            next: Instant::now(),
        }
    }

    /// Whether a purge is due now.
    pub(crate) fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    /// Records a purge that deleted `deleted` keys (or failed: `None`).
    pub(crate) fn done(&mut self, deleted: Option<usize>) {
        self.next = match deleted {
            Some(n) if n >= PURGE_LIMIT => Instant::now(),
            _ => Instant::now() + PURGE_EVERY,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(last: i64) -> MegaTicket {
        MegaTicket::new([1, 2, 3, 4, 5, last]).expect("ticket")
    }

    #[test]
    fn a_key_is_visible_ascii_of_bounded_length() {
        let key = IdempotencyKey::parse(b"8e03978e-40d5-43e8-bc93-6894a57f9324").expect("uuid");
        assert_eq!(key.as_str(), "8e03978e-40d5-43e8-bc93-6894a57f9324");
        assert_eq!(
            IdempotencyKey::parse(b"\"quoted:key/1+=\"")
                .expect("sf-string")
                .as_str(),
            "quoted:key/1+="
        );
        assert_eq!(IdempotencyKey::parse(b""), Err(KeyError::Empty));
        assert_eq!(IdempotencyKey::parse(b"\"\""), Err(KeyError::Empty));
        assert!(IdempotencyKey::parse(&[b'k'; KEY_MAX_LEN]).is_ok());
        assert_eq!(
            IdempotencyKey::parse(&[b'k'; KEY_MAX_LEN + 1]),
            Err(KeyError::TooLong { len: 256 })
        );
        let err = IdempotencyKey::parse(b"two words").expect_err("space");
        assert_eq!(
            err,
            KeyError::BadCharacter {
                found: "' '".into(),
                position: 4
            }
        );
        assert!(err.to_string().contains("visible ASCII"), "{err}");
        for bad in [&b"a\"b"[..], b"a\\b", b"caf\xc3\xa9", b"tab\t", b"\x7f"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_fingerprint_depends_on_the_route_and_every_number_in_order() {
        let one = Fingerprint::of("insert", &[ticket(6)]);
        assert_eq!(one, Fingerprint::of("insert", &[ticket(6)]));
        assert_ne!(one, Fingerprint::of("batch", &[ticket(6)]));
        assert_ne!(one, Fingerprint::of("insert", &[ticket(7)]));
        let two = Fingerprint::of("batch", &[ticket(6), ticket(7)]);
        assert_ne!(two, Fingerprint::of("batch", &[ticket(7), ticket(6)]));
        // Stable across builds: a stored key is compared by the next release too.
        assert_eq!(
            one.as_bytes()[..4],
            Sha256::digest(b"insert\0\x01\x02\x03\x04\x05\x06")[..4]
        );
    }

    #[test]
    fn ids_round_trip_through_their_compact_form() {
        for ids in [
            vec![7],
            vec![1, 2, 3, 4],
            vec![5, 9, 10, 11, 20],
            vec![3, 2],
            (1000..11000).collect::<Vec<i64>>(),
        ] {
            let text = encode_ids(&ids);
            assert_eq!(decode_ids(&text), Some(ids.clone()), "{text}");
        }
        assert_eq!(encode_ids(&[5, 9, 10, 11, 20]), "5,9-11,20");
        assert_eq!(encode_ids(&(1000..11000).collect::<Vec<_>>()), "1000-10999");
        for bad in ["", "a", "5-", "9-5", "1,,2"] {
            assert_eq!(decode_ids(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_stored_key_replays_the_same_request_and_refuses_another() {
        let request = Idempotency {
            key: IdempotencyKey::parse(b"k1").expect("key"),
            fingerprint: Fingerprint::of("insert", &[ticket(6)]),
            status: 201,
        };
        let stored = StoredKey {
            fingerprint: request.fingerprint.as_bytes().to_vec(),
            status: 201,
            ids: "41".into(),
        };
        assert_eq!(
            stored.answer(&request),
            Ok(Inserted::Replayed {
                ids: vec![41],
                status: 201
            })
        );
        let other = Idempotency {
            fingerprint: Fingerprint::of("insert", &[ticket(7)]),
            ..request
        };
        assert_eq!(stored.answer(&other), Err(Refused::KeyReused));
    }

    #[test]
    fn a_repeated_key_in_one_batch_is_marked_after_its_first() {
        let key = |k: &[u8]| Idempotency {
            key: IdempotencyKey::parse(k).expect("key"),
            fingerprint: Fingerprint::of("insert", &[ticket(6)]),
            status: 201,
        };
        let (a, b) = (key(b"a"), key(b"b"));
        let keys = [Some(&a), None, Some(&b), Some(&a), None, Some(&a)];
        assert_eq!(
            repeats_in(keys.into_iter()),
            [false, false, false, true, false, true]
        );
    }

    #[test]
    fn a_key_is_in_flight_until_released() {
        let in_flight = InFlight::default();
        let key = IdempotencyKey::parse(b"k").expect("key");
        assert!(in_flight.claim(&key));
        assert!(!in_flight.claim(&key));
        in_flight.release(&key);
        assert!(in_flight.claim(&key));
    }

    #[test]
    fn purges_run_at_once_while_a_backlog_lasts() {
        let mut schedule = PurgeSchedule::new();
        assert!(schedule.due());
        schedule.done(Some(PURGE_LIMIT));
        assert!(schedule.due(), "a full purge leaves more to do");
        schedule.done(Some(3));
        assert!(!schedule.due(), "then once a second");
    }
}
