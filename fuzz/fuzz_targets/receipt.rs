//! Receipts, as a caller reads the gateway's and a gateway reads the countersigned one: the
//! wire bytes, and any body signed by the gateway's fixed key (then checked against the
//! caller's invite, countersigned and read back as settled).
#![no_main]

use std::time::Duration;

use interlink_fuzz as fixtures;
use interlink_protocol::call::receipt::{COUNTERSIGN_DOMAIN, RECEIPT_DOMAIN};
use interlink_protocol::call::{SettledReceipt, SignedReceipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SignedReceipt::decode(data);
    let _ = SettledReceipt::decode(data);
    let sealed = fixtures::seal(RECEIPT_DOMAIN, data, &fixtures::GATEWAY_SEED);
    let Ok(signed) = SignedReceipt::decode(&sealed) else {
        return;
    };
    let invite = fixtures::invite();
    for observed in [0, 61_000, u64::MAX] {
        for heard_media in [false, true] {
            let _ = signed
                .receipt()
                .check(&invite, Duration::from_millis(observed), heard_media);
        }
    }
    let _ = signed.receipt().duration();
    if let Ok(settled) = signed.countersign(&fixtures::caller_key()) {
        let again = SettledReceipt::decode(settled.as_bytes())
            .unwrap_or_else(|e| panic!("a countersigned receipt does not read back: {e}"));
        assert_eq!(again.receipt(), signed.receipt());
        assert_eq!(again.gateway_signed(), signed.as_bytes());
    }
    let countersigned = fixtures::seal(COUNTERSIGN_DOMAIN, &sealed, &fixtures::CALLER_SEED);
    let _ = SettledReceipt::decode(&countersigned);
});
