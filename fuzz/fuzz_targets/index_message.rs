//! The offer index's messages (`/interlink/index/1`), as a node reads them: a request
//! another peer sends (a lookup, answered from an index holding the fixture offer; a
//! store, admitted to it; or another holder's digest, reconciled with it) and a response to
//! a walk (fed into a `Walk` that asked for it).
//!
//! Input: one byte (even: a request, odd: a response), then the message's bytes.
#![no_main]

use std::time::{Duration, Instant};

use interlink_fuzz as fixtures;
use interlink_protocol::discovery::walk::{Position, Walk, WalkConfig};
use interlink_protocol::discovery::wire::{Request, Response, WireAnswer};
use interlink_protocol::discovery::{Index, IndexConfig, IndexKey, OfferQuery};
use interlink_protocol::ranking::Policy;
use interlink_protocol::{ServiceKind, SignedOffer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    if kind % 2 == 0 {
        let Ok(request) = Request::decode(bytes) else {
            return;
        };
        // Whatever decodes encodes back the same.
        assert_eq!(request.encode().ok().as_deref(), Some(bytes));
        let mut index: Index<u8> = Index::new(IndexConfig::default());
        let key = IndexKey::of_number(&fixtures::destination());
        let _ = index.admit(key, fixtures::offer(), &0, true, now);
        match request {
            Request::Find(query) => {
                if let Some(answer) = index.answer(&query, fixtures::now(), now) {
                    let _ = WireAnswer::from_selection(&answer.selection, answer.held);
                }
            }
            Request::Store { key, offers } => {
                for offer in offers {
                    if let Ok(offer) = SignedOffer::decode(&offer, fixtures::now()) {
                        let _ = index.admit(key, offer, &1, false, now);
                    }
                }
                index.expire(fixtures::now());
            }
            Request::Sync { key, digest } => {
                let reconciled = index.reconcile(&key, &digest, 64);
                assert!(
                    reconciled.newer.len() <= 64,
                    "more offers handed over than asked"
                );
            }
        }
    } else {
        let Ok(response) = Response::decode(bytes) else {
            return;
        };
        assert_eq!(response.encode().ok().as_deref(), Some(bytes));
        let Response::Found(found) = response else {
            return;
        };
        let query = OfferQuery::number(
            fixtures::destination(),
            vec![ServiceKind::WEBRTC_TO_PSTN],
            Policy::default(),
            10,
        );
        let config = WalkConfig::default();
        let mut walk = Walk::new(
            Position([0; 32]),
            query,
            config,
            [(0u8, Position([1; 32]))],
            1,
            now,
        );
        while walk.poll_output(now).is_some() {}
        let closer = found
            .closer
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let mut position = [0u8; 32];
                for (byte, from) in position.iter_mut().zip(record.peer.iter()) {
                    *byte = *from;
                }
                (
                    u8::try_from(i + 2).unwrap_or(u8::MAX),
                    Position(position),
                    record.addresses.clone(),
                )
            })
            .collect();
        walk.on_response(&0, closer, found.answer, fixtures::now(), now);
        while walk.poll_output(now).is_some() {}
        walk.handle_timeout(now + Duration::from_secs(60));
        while walk.poll_output(now).is_some() {}
        let result = walk.result(fixtures::now());
        assert!(
            result.offers.len() <= 20,
            "more offers than a limit of 10 allows"
        );
    }
});
