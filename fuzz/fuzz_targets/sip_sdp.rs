//! SDP from a SIP trunk (a 200's answer, a re-INVITE's offer) as the SIP bridge reads it,
//! and a caller's offer as the bridge picks the trunk leg's codec from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The bridge reads SIP bodies with `String::from_utf8_lossy`.
    let text = String::from_utf8_lossy(data);
    let _ = interlink_gateway_plugin::fuzzing::sip_sdp(&text);
});
