//! SIP messages from a trunk, parsed as the gateway's SIP stack parses a datagram, then read
//! as the bridge reads a response (status, who answered).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = interlink_gateway_plugin::fuzzing::sip_message(data);
});
