//! Entry points for the fuzz targets (`fuzz/` at the workspace root): each runs one parser
//! of the gateway on bytes from the network the way the gateway does, and reports nothing
//! but whether it accepted them. Not part of the API.

use rsipstack::sip::SipMessage;
use rsipstack::sip::prelude::HeadersExt;

use crate::sip::{responses, sdp};
use crate::webrtc_leg;

/// The trunk's SDP (a 200's answer, or a re-INVITE's offer), as the SIP bridge reads it;
/// and a caller's offer, as the bridge picks the codec of the trunk leg from it.
pub fn sip_sdp(text: &str) -> bool {
    let _ = sdp::caller_codec(text);
    sdp::parse_remote(text).is_ok()
}

/// A caller's SDP offer, as the gateway's WebRTC leg prepares its answer: the formats it
/// takes, the offer reduced to them (which webrtc-rs then parses again), and an answer's
/// negotiated formats, as the caller's own WebRTC endpoint reads the gateway's answer.
pub fn webrtc_sdp(text: &str) -> bool {
    let Ok(parsed) = webrtc_leg::sdp::parse_sdp(text) else {
        return false;
    };
    let _ = webrtc_leg::sdp::negotiated_formats(&parsed);
    let Ok(formats) = webrtc_leg::sdp::answer_formats(&parsed) else {
        return false;
    };
    let payload_types: Vec<u8> = formats.iter().map(|f| f.payload_type).collect();
    let reduced = webrtc_leg::sdp::keep_audio_formats(text, &payload_types);
    // webrtc-rs reads the reduced offer next; a reduction it cannot read fails the call
    // with an error, which is fine, but must not panic here.
    webrtc_leg::sdp::parse_sdp(&reduced).is_ok()
}

/// A SIP message from the trunk, parsed as the SIP stack does, then read as the bridge reads
/// a response: its status and who answered.
pub fn sip_message(bytes: &[u8]) -> bool {
    let Ok(message) = SipMessage::try_from(bytes) else {
        return false;
    };
    if let SipMessage::Response(response) = &message {
        let code = response.status_code.code();
        let _ = responses::is_ringing(code);
        let _ = responses::final_outcome(code);
        if let Some(pai) = response.p_asserted_identity_header() {
            let _ = responses::identity_of(pai.value());
        }
        if let Ok(to) = response.to_header() {
            let _ = responses::identity_of(to.value());
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = responses::identity_of(text);
    }
    true
}
