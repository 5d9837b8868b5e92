//! Signed offers, as the DHT and discovery read them: the wire bytes, and any body signed
//! by a fixed key; an accepted offer is then matched, ranked and compared as callers do.
#![no_main]

use interlink_fuzz as fixtures;
use interlink_protocol::SignedOffer;
use interlink_protocol::ranking::{self, History, Measurements, Policy};
use interlink_protocol::signed::SIGNING_DOMAIN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(SignedOffer::decode(data, fixtures::now()).ok());
    let sealed = fixtures::seal(SIGNING_DOMAIN, data, &fixtures::GATEWAY_SEED);
    check(SignedOffer::decode(&sealed, fixtures::now()).ok());
});

fn check(offer: Option<SignedOffer>) {
    let Some(offer) = offer else { return };
    // One offer, one encoding: signing the decoded offer again gives the same bytes.
    if offer.provider() == fixtures::gateway_key().provider_id() {
        let again = SignedOffer::sign(offer.offer().clone(), &fixtures::gateway_key())
            .unwrap_or_else(|e| panic!("a decoded offer does not sign again: {e}"));
        assert_eq!(
            again.as_bytes(),
            offer.as_bytes(),
            "two encodings of one offer"
        );
    }
    let _ = offer.offer().country_codes();
    let _ = offer.offer().best_route(&fixtures::destination());
    let _ = offer.may_replace(&fixtures::offer());
    let offers = [offer, fixtures::offer()];
    let _ = ranking::rank(
        &offers,
        &fixtures::destination(),
        &Measurements::new(),
        &History::new(),
        &Policy::default(),
    );
}
