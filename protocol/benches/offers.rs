//! Offers signed per second, and decoded and verified per second beside raw ed25519
//! verification of the same bytes, in one run.
//!
//! `cargo bench -p interlink-protocol --bench offers`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, VerifyingKey};
use interlink_protocol::offer::{
    ClaimedQuality, Codec, Mos, OFFER_FORMAT_VERSION, OfferStatus, Permille, Route, ServiceOffer,
    Tariff,
};
use interlink_protocol::signed::SIGNING_DOMAIN;
use interlink_protocol::{Currency, Prefix, SecretKey, ServiceKind, SignedOffer, UnixTime};

const NOW: UnixTime = UnixTime(1_800_000_000);

/// A realistic offer: ten routes, two addresses.
fn offer(key: &SecretKey) -> ServiceOffer {
    let gbp = Currency::new("GBP").unwrap();
    let routes = [
        "44", "447", "4420", "33", "336", "49", "4915", "34", "39", "353",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| Route {
        prefix: Prefix::new(p).unwrap(),
        tariff: Tariff {
            currency: gbp,
            setup_fee: 0,
            per_minute: 1 + i as u64,
            billing_increment_secs: 60,
        },
    })
    .collect();
    ServiceOffer {
        version: OFFER_FORMAT_VERSION,
        provider: key.provider_id(),
        seq: 1_763_000_000_000,
        issued_at: NOW,
        expires_at: NOW.plus(Duration::from_secs(3600)),
        status: OfferStatus::Available,
        kind: ServiceKind::WEBRTC_TO_PSTN,
        display_name: "Inter Telecom".into(),
        region: "eu-west".into(),
        routes,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        quality: ClaimedQuality {
            answer_seizure_ratio: Permille(620),
            post_dial_delay_ms: 1800,
            mos: Mos(430),
        },
        capacity: 200,
        addresses: vec![
            "/ip4/203.0.113.7/tcp/4001".parse().unwrap(),
            "/ip4/203.0.113.7/udp/4001/quic-v1".parse().unwrap(),
        ],
        conference: None,
    }
}

fn offers(c: &mut Criterion) {
    let key = SecretKey::from_seed(&[7; 32]);
    let offer = offer(&key);
    let signed = SignedOffer::sign(offer.clone(), &key).unwrap();
    let bytes = signed.as_bytes().to_vec();
    println!("signed offer with 10 routes: {} bytes", bytes.len());

    let verifying_key = VerifyingKey::from_bytes(bytes[..32].try_into().unwrap()).unwrap();
    let signature = Signature::from_bytes(bytes[32..96].try_into().unwrap());
    let message = [SIGNING_DOMAIN, &bytes[96..]].concat();

    let mut group = c.benchmark_group("offers");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_and_sign", |b| {
        b.iter(|| SignedOffer::sign(black_box(offer.clone()), &key).unwrap())
    });
    group.bench_function("decode_and_verify", |b| {
        b.iter(|| SignedOffer::decode(black_box(&bytes), NOW).unwrap())
    });
    // What any verifier of wire bytes does: parse the public key, then verify.
    let key_bytes: [u8; 32] = bytes[..32].try_into().unwrap();
    group.bench_function("raw_ed25519_parse_key_and_verify_strict", |b| {
        b.iter(|| {
            let key = VerifyingKey::from_bytes(black_box(&key_bytes)).unwrap();
            key.verify_strict(black_box(&message), &signature).unwrap()
        })
    });
    // The signature check alone, with the key already parsed.
    group.bench_function("raw_ed25519_verify_strict_preparsed_key", |b| {
        b.iter(|| {
            verifying_key
                .verify_strict(black_box(&message), &signature)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, offers);
criterion_main!(benches);
