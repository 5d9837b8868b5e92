//! A caller's SDP offer as the gateway's WebRTC leg reads and reduces it, and an answer as
//! the caller's WebRTC endpoint reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Invites carry SDP as a UTF-8 string.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = interlink_gateway_plugin::fuzzing::webrtc_sdp(text);
    }
});
