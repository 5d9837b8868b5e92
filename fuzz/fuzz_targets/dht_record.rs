//! DHT records, as a node decides whether to store one for others (`network::records`): a
//! key, a value and the copy it already holds, and provider records' keys.
//!
//! Input: key length (1 byte), key, value length (2 bytes, big-endian), value, then the
//! stored copy (empty: none).
#![no_main]

use interlink_fuzz as fixtures;
use interlink_node::network::records;
use interlink_protocol::DhtKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&key_len, rest)) = data.split_first() else {
        return;
    };
    let (key, rest) = rest.split_at(usize::from(key_len).min(rest.len()));
    let (value_len, rest) = match rest.split_first_chunk::<2>() {
        Some((len, rest)) => (usize::from(u16::from_be_bytes(*len)), rest),
        None => (0, rest),
    };
    let (value, stored) = rest.split_at(value_len.min(rest.len()));
    let _ = records::admit_provider(key);
    if let Some(parsed) = DhtKey::parse(key) {
        // A key that parses is written back the same.
        assert_eq!(parsed.to_bytes(), key, "two spellings of one DHT key");
    }
    let stored = (!stored.is_empty()).then_some(stored);
    if let Ok(offer) = records::admit_value(key, value, stored, fixtures::now()) {
        let _ = records::expiry(&offer, fixtures::now(), std::time::Instant::now());
    }
});
