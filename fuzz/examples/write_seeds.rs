//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`, from real values
//! encoded as the node encodes them, and checks that each one is accepted by the decoder it
//! seeds (a seed that is refused at once teaches the fuzzer nothing).
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example write_seeds

use std::path::{Path, PathBuf};

use interlink_fuzz as fixtures;
use interlink_protocol::call::messages::{ByeCause, Frame, RejectReason};
use interlink_protocol::call::{SettledReceipt, SignedInvite, SignedReceipt};
use interlink_protocol::discovery::wire::{
    AnsweredOffer, Found, PeerRecord, Request, Response, WireAnswer,
};
use interlink_protocol::discovery::{IndexKey, OfferQuery};
use interlink_protocol::ranking::Policy;
use interlink_protocol::{DhtKey, ServiceKind, SignedOffer};

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let offer = fixtures::offer();
    let invite = fixtures::signed_invite();
    let receipt = fixtures::receipt();
    let settled = receipt
        .countersign(&fixtures::caller_key())
        .unwrap_or_else(|e| panic!("{e}"));

    assert!(SignedOffer::decode(offer.as_bytes(), fixtures::now()).is_ok());
    write(&root, "signed_offer", "offer", offer.as_bytes());
    write(
        &root,
        "signed_offer",
        "offer_body",
        fixtures::body(offer.as_bytes()),
    );

    assert!(SignedInvite::decode(invite.as_bytes(), fixtures::now_ms()).is_ok());
    write(&root, "invite", "invite", invite.as_bytes());
    write(
        &root,
        "invite",
        "invite_body",
        fixtures::body(invite.as_bytes()),
    );

    assert!(SignedReceipt::decode(receipt.as_bytes()).is_ok());
    assert!(SettledReceipt::decode(settled.as_bytes()).is_ok());
    write(&root, "receipt", "receipt", receipt.as_bytes());
    write(
        &root,
        "receipt",
        "receipt_body",
        fixtures::body(receipt.as_bytes()),
    );
    write(&root, "receipt", "settled", settled.as_bytes());

    // What a gateway sends the caller for a whole call; what a caller sends the gateway.
    write(
        &root,
        "call_stream",
        "gateway_side",
        &fixtures::stream(&fixtures::gateway_frames()),
    );
    write(
        &root,
        "call_stream",
        "caller_side",
        &fixtures::stream(&[
            Frame::Invite(invite.as_bytes().to_vec()),
            Frame::Bye(ByeCause::CallerHangUp),
            Frame::ReceiptAccepted(settled.as_bytes().to_vec()),
        ]),
    );
    write(
        &root,
        "call_stream",
        "rejected",
        &fixtures::stream(&[
            Frame::Trying,
            Frame::Reject(RejectReason::PriceChanged {
                current: Some(fixtures::invite().tariff),
            }),
        ]),
    );

    // dht_record input: key length (1 byte), key, value length (2 bytes, big-endian),
    // value, then the stored copy.
    let key = DhtKey::Offer(offer.provider()).to_bytes();
    let older = {
        let mut o = offer.offer().clone();
        o.seq -= 1;
        SignedOffer::sign(o, &fixtures::gateway_key()).unwrap_or_else(|e| panic!("{e}"))
    };
    write(
        &root,
        "dht_record",
        "new",
        &record(&key, offer.as_bytes(), &[]),
    );
    write(
        &root,
        "dht_record",
        "replaces",
        &record(&key, offer.as_bytes(), older.as_bytes()),
    );
    write(
        &root,
        "dht_record",
        "providers",
        &record(b"/interlink/providers/1/webrtc-pstn/44", &[], &[]),
    );

    write(
        &root,
        "sip_sdp",
        "sipp_answer",
        fixtures::SIP_ANSWER_SDP.as_bytes(),
    );
    write(
        &root,
        "sip_sdp",
        "answer_events",
        fixtures::SIP_ANSWER_SDP_EVENTS.as_bytes(),
    );
    write(
        &root,
        "sip_sdp",
        "browser_offer",
        fixtures::WEBRTC_OFFER.as_bytes(),
    );

    write(
        &root,
        "webrtc_sdp",
        "browser_offer",
        fixtures::WEBRTC_OFFER.as_bytes(),
    );
    write(
        &root,
        "webrtc_sdp",
        "gateway_answer",
        fixtures::WEBRTC_ANSWER.as_bytes(),
    );

    let [ringing, busy] = fixtures::sip_provisional_and_busy();
    let [bye, reinvite] = fixtures::sip_requests();
    for (name, message) in [
        ("ok", fixtures::sip_200_ok()),
        ("ringing", ringing),
        ("busy", busy),
        ("bye", bye),
        ("reinvite", reinvite),
    ] {
        assert!(
            interlink_gateway_plugin::fuzzing::sip_message(message.as_bytes()),
            "{name} does not parse"
        );
        write(&root, "sip_message", name, message.as_bytes());
    }
    assert!(interlink_gateway_plugin::fuzzing::sip_sdp(
        fixtures::SIP_ANSWER_SDP
    ));
    assert!(interlink_gateway_plugin::fuzzing::webrtc_sdp(
        fixtures::WEBRTC_OFFER
    ));
    // The offer index: a lookup and a store another peer sends, and a holder's answer.
    let query = OfferQuery::number(
        fixtures::destination(),
        vec![ServiceKind::WEBRTC_TO_PSTN],
        Policy::default(),
        10,
    );
    let key = IndexKey::of_number(&fixtures::destination());
    let find = Request::Find(query)
        .encode()
        .unwrap_or_else(|e| panic!("{e}"));
    let store = Request::Store {
        key,
        offers: vec![offer.as_bytes().to_vec()],
    }
    .encode()
    .unwrap_or_else(|e| panic!("{e}"));
    let sync = Request::Sync {
        key,
        digest: vec![(offer.provider(), offer.seq() + 1)],
    }
    .encode()
    .unwrap_or_else(|e| panic!("{e}"));
    let found = Response::Found(Found {
        closer: vec![PeerRecord {
            peer: vec![0, 36, 8, 1, 18, 32, 7, 7, 7, 7],
            addresses: vec![
                "/ip4/192.0.2.1/tcp/4001"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            ],
        }],
        answer: Some(WireAnswer {
            offers: vec![AnsweredOffer {
                offer: offer.as_bytes().to_vec(),
                seniority: Some(0),
            }],
            matching: 1,
            held: 1,
            truncated: false,
        }),
    })
    .encode()
    .unwrap_or_else(|e| panic!("{e}"));
    for (name, kind, bytes) in [
        ("find", 0u8, find),
        ("store", 0, store),
        ("sync", 0, sync),
        ("found", 1, found),
    ] {
        let mut input = vec![kind];
        input.extend_from_slice(&bytes);
        write(&root, "index_message", name, &input);
    }
    println!("seeds written to {}", root.display());
}

fn record(key: &[u8], value: &[u8], stored: &[u8]) -> Vec<u8> {
    let mut bytes = vec![u8::try_from(key.len()).unwrap_or(u8::MAX)];
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    bytes.extend_from_slice(value);
    bytes.extend_from_slice(stored);
    bytes
}

fn write(root: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
