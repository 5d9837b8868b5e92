//! What the fuzz targets share: fixed keys, a fixed `now`, signing of arbitrary bodies, and
//! the real values the seed corpora are made of (`examples/write_seeds.rs`).
//!
//! Most network input is signed, and a fuzzer that mutates signed bytes only ever reaches
//! the signature check. So each target for a signed thing runs every input twice: as the
//! signed bytes from the wire, and as the body of an envelope the target signs itself with
//! a fixed key, which takes the mutated body through decoding, the signature, the field
//! checks and whatever the node does next with the value.

use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use interlink_protocol::call::messages::{ByeCause, Frame, Invite, OfferRef};
use interlink_protocol::call::{CallId, SignedInvite, SignedReceipt, Timers, UsageReceipt};
use interlink_protocol::offer::{
    ClaimedQuality, Codec, Mos, OFFER_FORMAT_VERSION, OfferStatus, Permille, Route, ServiceOffer,
    Tariff,
};
use interlink_protocol::{
    Currency, E164, Prefix, SecretKey, ServiceKind, SignedOffer, Timestamp, UnixTime,
};

/// The `now` of every target, in Unix seconds: the seeds are valid at this time.
pub const NOW_SECS: u64 = 1_800_000_000;
/// The gateway's key seed: it signs the offers and receipts the targets seal.
pub const GATEWAY_SEED: [u8; 32] = [7; 32];
/// The caller's key seed: it signs the invites and countersigns receipts.
pub const CALLER_SEED: [u8; 32] = [9; 32];

/// `now` as offers see it.
pub fn now() -> UnixTime {
    UnixTime(NOW_SECS)
}

/// `now` as calls see it.
pub fn now_ms() -> Timestamp {
    Timestamp(NOW_SECS * 1000)
}

pub fn gateway_key() -> SecretKey {
    SecretKey::from_seed(&GATEWAY_SEED)
}

pub fn caller_key() -> SecretKey {
    SecretKey::from_seed(&CALLER_SEED)
}

/// `signer ‖ signature ‖ body`, signed over `domain ‖ body` with the key of `seed`: the
/// envelope of the protocol, made for any body.
pub fn seal(domain: &[u8], body: &[u8], seed: &[u8; 32]) -> Vec<u8> {
    let key = SigningKey::from_bytes(seed);
    let mut message = domain.to_vec();
    message.extend_from_slice(body);
    let signature = key.sign(&message).to_bytes();
    let mut bytes = key.verifying_key().to_bytes().to_vec();
    bytes.extend_from_slice(&signature);
    bytes.extend_from_slice(body);
    bytes
}

/// The body of a signed envelope (what follows the signer and the signature).
pub fn body(sealed: &[u8]) -> &[u8] {
    sealed.get(96..).unwrap_or_default()
}

fn gbp() -> Currency {
    Currency::new("GBP").unwrap_or_else(|e| panic!("{e}"))
}

pub fn destination() -> E164 {
    E164::parse("+447700900123").unwrap_or_else(|e| panic!("{e}"))
}

/// The gateway's offer, valid at [`now`].
pub fn offer() -> SignedOffer {
    let route = |prefix: &str, per_minute| Route {
        prefix: Prefix::new(prefix).unwrap_or_else(|e| panic!("{e}")),
        tariff: Tariff {
            currency: gbp(),
            setup_fee: 1,
            per_minute,
            billing_increment_secs: 60,
        },
    };
    let offer = ServiceOffer {
        version: OFFER_FORMAT_VERSION,
        provider: gateway_key().provider_id(),
        seq: 42,
        issued_at: now(),
        expires_at: now().plus(Duration::from_secs(3600)),
        status: OfferStatus::Available,
        kind: ServiceKind::WEBRTC_TO_PSTN,
        display_name: "Inter".into(),
        region: "eu-west".into(),
        routes: vec![route("44", 3), route("447", 2), route("33", 4)],
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        quality: ClaimedQuality {
            answer_seizure_ratio: Permille(600),
            post_dial_delay_ms: 1500,
            mos: Mos(410),
        },
        capacity: 100,
        addresses: vec![
            "/ip4/203.0.113.7/tcp/4001"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        ],
        conference: None,
    };
    SignedOffer::sign(offer, &gateway_key()).unwrap_or_else(|e| panic!("{e}"))
}

/// The invite the call targets' caller sends, sent at [`now_ms`].
pub fn invite() -> Invite {
    Invite {
        call_id: CallId::from_bytes([5; 16]),
        destination: destination(),
        offer: OfferRef {
            provider: gateway_key().provider_id(),
            seq: 42,
        },
        prefix: Prefix::new("447").unwrap_or_else(|e| panic!("{e}")),
        tariff: Tariff {
            currency: gbp(),
            setup_fee: 1,
            per_minute: 2,
            billing_increment_secs: 60,
        },
        caller: caller_key().provider_id(),
        sdp_offer: WEBRTC_OFFER.into(),
        sent_at: now_ms(),
    }
}

pub fn signed_invite() -> SignedInvite {
    SignedInvite::sign(invite(), &caller_key()).unwrap_or_else(|e| panic!("{e}"))
}

/// The call's timers; deadlines fall at [`now_ms`] plus these.
pub fn timers() -> Timers {
    Timers::default()
}

/// When the call targets' callee answers and the call ends.
pub const ANSWERED_AFTER_MS: u64 = 200;
pub const ENDED_AFTER_MS: u64 = 61_200;

/// The gateway's receipt for [`invite`], answered and ended at the times above.
pub fn receipt() -> SignedReceipt {
    let usage = UsageReceipt::for_call(
        &invite(),
        Timestamp(now_ms().0 + ANSWERED_AFTER_MS),
        Timestamp(now_ms().0 + ENDED_AFTER_MS),
    );
    SignedReceipt::sign(usage, &gateway_key()).unwrap_or_else(|e| panic!("{e}"))
}

/// A call stream's bytes: each frame as the node writes it (4-byte length, then the frame).
pub fn stream(frames: &[Frame]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for frame in frames {
        let body = frame.encode().unwrap_or_else(|e| panic!("{e}"));
        let length = u32::try_from(body.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&body);
    }
    bytes
}

/// The frames a gateway sends for a whole call, receipt included.
pub fn gateway_frames() -> Vec<Frame> {
    vec![
        Frame::Trying,
        Frame::Ringing,
        Frame::Answer {
            sdp: WEBRTC_ANSWER.into(),
            answered_by: Some("sip:+447700900123@trunk.example".into()),
        },
        Frame::Bye(ByeCause::CalleeHangUp),
        Frame::Receipt(receipt().as_bytes().to_vec()),
    ]
}

/// A browser's offer, as Chromium writes it (audio part).
pub const WEBRTC_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:9Ddr\r\n\
a=ice-pwd:hm0VjEeZy3cL5Lj3b2O9DLW7\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB:3A:9F:A9:9D:FC:4D:93:AD:53:9D:33:9C\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n";

/// A gateway's answer to it.
pub const WEBRTC_ANSWER: &str = "v=0\r\n\
o=- 1 1 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 0 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=setup:active\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50001 typ host\r\n";

/// A SIP trunk's answer, as sipp's `uas` writes it.
pub const SIP_ANSWER_SDP: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// A trunk's answer with telephone events, PCMA first and a session-level address.
pub const SIP_ANSWER_SDP_EVENTS: &str = "v=0\r\n\
o=- 7 7 IN IP4 10.1.2.3\r\n\
s=call\r\n\
c=IN IP4 10.1.2.3\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// A trunk's 200 OK to the gateway's INVITE.
pub fn sip_200_ok() -> String {
    let body = SIP_ANSWER_SDP;
    format!(
        "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-0;received=127.0.0.1\r\n\
From: \"12D3KooW\" <sip:interlink@127.0.0.1>;tag=abc\r\n\
To: <sip:+447700900123@127.0.0.1:5070>;tag=1\r\n\
Call-ID: 1-2@interlink.invalid\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:127.0.0.1:5070;transport=UDP>\r\n\
P-Asserted-Identity: \"Bob\" <sip:+447700900123@trunk.example>;party=called\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A trunk's 180 Ringing and a 486 Busy Here.
pub fn sip_provisional_and_busy() -> [String; 2] {
    let head = |status: &str| {
        format!(
            "SIP/2.0 {status}\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-0\r\n\
From: <sip:interlink@127.0.0.1>;tag=abc\r\n\
To: <sip:+447700900123@127.0.0.1:5070>;tag=1\r\n\
Call-ID: 1-2@interlink.invalid\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    [head("180 Ringing"), head("486 Busy Here")]
}

/// A trunk's BYE, and a re-INVITE that moves its media.
pub fn sip_requests() -> [String; 2] {
    let bye = "BYE sip:interlink@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-2\r\n\
From: <sip:+447700900123@127.0.0.1:5070>;tag=1\r\n\
To: <sip:interlink@127.0.0.1>;tag=abc\r\n\
Call-ID: 1-2@interlink.invalid\r\n\
CSeq: 2 BYE\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n"
        .to_owned();
    let body = SIP_ANSWER_SDP_EVENTS;
    let reinvite = format!(
        "INVITE sip:interlink@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-3\r\n\
From: <sip:+447700900123@127.0.0.1:5070>;tag=1\r\n\
To: <sip:interlink@127.0.0.1>;tag=abc\r\n\
Call-ID: 1-2@interlink.invalid\r\n\
CSeq: 3 INVITE\r\n\
Max-Forwards: 70\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    [bye, reinvite]
}
