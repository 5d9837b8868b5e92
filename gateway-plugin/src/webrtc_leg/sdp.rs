//! The SDP of the WebRTC leg, read and reduced by hand where webrtc-rs would get it wrong.
//!
//! webrtc-rs negotiates the codecs itself, but it matches a remote codec to a local one by
//! name only, so the leg decides first: [`answer_formats`] picks what an answer takes from
//! an offer (PCMU, then PCMA, with telephone-event/8000, on the offer's payload types),
//! [`keep_audio_formats`] shows webrtc-rs an offer reduced to those, and
//! [`negotiated_formats`] reads what an answer settled on. The SIP leg's SDP is in
//! `sip/sdp.rs`.

use std::io::Cursor;

use interlink_protocol::Codec;
use rtc::sdp::SessionDescription;

use super::{MediaError, SdpFault};

/// Static payload types of RFC 3551, used when an offer lists them without `a=rtpmap`.
pub(super) const PCMU_STATIC_PAYLOAD_TYPE: u8 = 0;
pub(super) const PCMA_STATIC_PAYLOAD_TYPE: u8 = 8;
/// G.711 and its telephone events run on an 8 kHz clock.
pub(super) const CLOCK_RATE: u32 = 8000;

pub(crate) use crate::audio::PayloadFormat;

/// Whether `codec` is one of the audio codecs a leg carries (G.711), not telephone events.
pub(super) fn is_audio(codec: Codec) -> bool {
    matches!(codec, Codec::Pcmu | Codec::Pcma)
}

pub(crate) fn parse_sdp(sdp: &str) -> Result<SessionDescription, MediaError> {
    SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(|error| MediaError::BadSdp(SdpFault::Unreadable(error)))
}

/// One payload format of an `m=` line: its type, encoding name and clock rate.
struct OfferedFormat {
    payload_type: u8,
    name: String,
    clock_rate: u32,
}

/// The formats of the first audio section that is not rejected (port 0).
fn audio_formats(sdp: &SessionDescription) -> Result<Vec<OfferedFormat>, MediaError> {
    let media = sdp
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media.eq_ignore_ascii_case("audio") && m.media_name.port.value != 0)
        .ok_or(MediaError::NoAudio)?;
    let mut formats = Vec::new();
    for format in &media.media_name.formats {
        let Ok(payload_type) = format.parse::<u8>() else {
            continue;
        };
        let rtpmap = media.attributes.iter().find_map(|a| {
            let value = a.value.as_deref()?;
            let (pt, encoding) = value.split_once(' ')?;
            (a.key == "rtpmap" && pt.trim() == format).then_some(encoding.trim())
        });
        let (name, clock_rate) = match rtpmap {
            Some(encoding) => {
                let mut parts = encoding.split('/');
                let name = parts.next().unwrap_or_default().to_owned();
                let clock_rate = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                (name, clock_rate)
            }
            None => match payload_type {
                PCMU_STATIC_PAYLOAD_TYPE => ("PCMU".to_owned(), CLOCK_RATE),
                PCMA_STATIC_PAYLOAD_TYPE => ("PCMA".to_owned(), CLOCK_RATE),
                _ => (format!("payload type {payload_type}"), 0),
            },
        };
        formats.push(OfferedFormat {
            payload_type,
            name,
            clock_rate,
        });
    }
    Ok(formats)
}

/// The codec a format carries, if it is one a WebRTC leg negotiates.
fn known_codec(format: &OfferedFormat) -> Option<Codec> {
    if format.clock_rate != CLOCK_RATE {
        return None;
    }
    [Codec::Pcmu, Codec::Pcma, Codec::TelephoneEvent]
        .into_iter()
        .find(|codec| codec.name().eq_ignore_ascii_case(&format.name))
}

/// What an answer to this offer takes, in our order of preference, with the offer's
/// payload types (so both directions use the same numbers).
pub(crate) fn answer_formats(offer: &SessionDescription) -> Result<Vec<PayloadFormat>, MediaError> {
    let offered = audio_formats(offer)?;
    let mut formats = Vec::new();
    for wanted in [Codec::Pcmu, Codec::Pcma, Codec::TelephoneEvent] {
        if let Some(format) = offered
            .iter()
            .find(|format| known_codec(format) == Some(wanted))
        {
            formats.push(PayloadFormat {
                codec: wanted,
                payload_type: format.payload_type,
            });
        }
    }
    if !formats.iter().any(|f| is_audio(f.codec)) {
        return Err(MediaError::NoCommonCodec {
            offered: offered.into_iter().map(|f| f.name).collect(),
        });
    }
    Ok(formats)
}

/// The SDP with its first active audio section reduced to `payload_types`.
///
/// webrtc-rs matches a remote codec to a local one by name and format parameters only, not
/// clock rate: given Chromium's offer (telephone-event/48000 listed before
/// telephone-event/8000) it answers telephone-event/48000 next to G.711. Shown only the
/// formats we take, it cannot; the answer stays valid for the full offer.
pub(crate) fn keep_audio_formats(sdp: &str, payload_types: &[u8]) -> String {
    let kept = |payload_type: &str| {
        payload_type
            .parse::<u8>()
            .is_ok_and(|pt| payload_types.contains(&pt))
    };
    let mut reduced = String::with_capacity(sdp.len());
    let (mut in_section, mut done) = (false, false);
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end_matches(['\r', '\n']);
        if let Some(media) = text.strip_prefix("m=") {
            in_section = false;
            let fields: Vec<&str> = media.split(' ').collect();
            let port = fields.get(1).and_then(|p| p.split('/').next());
            if !done
                && fields.len() > 3
                && fields[0].eq_ignore_ascii_case("audio")
                && port != Some("0")
            {
                in_section = true;
                done = true;
                reduced.push_str("m=");
                reduced.push_str(&fields[..3].join(" "));
                for format in fields[3..].iter().filter(|f| kept(f)) {
                    reduced.push(' ');
                    reduced.push_str(format);
                }
                reduced.push_str("\r\n");
                continue;
            }
        } else if in_section {
            let format = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .find_map(|prefix| text.strip_prefix(prefix))
                .and_then(|rest| rest.split(' ').next());
            // `a=rtcp-fb:*` applies to every format and stays.
            if format.is_some_and(|f| f != "*" && !kept(f)) {
                continue;
            }
        }
        reduced.push_str(line);
    }
    reduced
}

/// The formats an answer settled on, in its order; the first audio codec is the one in use.
pub(crate) fn negotiated_formats(
    answer: &SessionDescription,
) -> Result<Vec<PayloadFormat>, MediaError> {
    let listed = audio_formats(answer).map_err(|_| MediaError::NoCommonCodec {
        offered: Vec::new(),
    })?;
    let formats: Vec<PayloadFormat> = listed
        .iter()
        .filter_map(|format| {
            known_codec(format).map(|codec| PayloadFormat {
                codec,
                payload_type: format.payload_type,
            })
        })
        .collect();
    if !formats.iter().any(|f| is_audio(f.codec)) {
        return Err(MediaError::NoCommonCodec {
            offered: listed.into_iter().map(|f| f.name).collect(),
        });
    }
    Ok(formats)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const OFFER: &str = "v=0\r\n\
        o=- 1 1 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 8 0 126\r\n\
        c=IN IP4 0.0.0.0\r\n\
        a=mid:0\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        a=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn answer_prefers_pcmu_and_keeps_the_offer_payload_types() {
        let formats = answer_formats(&parse_sdp(OFFER).unwrap()).unwrap();
        assert_eq!(
            formats,
            vec![
                PayloadFormat {
                    codec: Codec::Pcmu,
                    payload_type: 0
                },
                PayloadFormat {
                    codec: Codec::Pcma,
                    payload_type: 8
                },
                PayloadFormat {
                    codec: Codec::TelephoneEvent,
                    payload_type: 126
                },
            ]
        );
    }

    #[test]
    fn an_offer_without_g711_has_no_common_codec() {
        let opus_only = OFFER.replace(" 111 8 0 126", " 111 126");
        match answer_formats(&parse_sdp(&opus_only).unwrap()) {
            Err(MediaError::NoCommonCodec { offered }) => {
                assert_eq!(offered, ["opus", "telephone-event"]);
            }
            other => panic!("expected no common codec, got {other:?}"),
        }
        let video_only = OFFER.replace("m=audio", "m=video");
        assert!(matches!(
            answer_formats(&parse_sdp(&video_only).unwrap()),
            Err(MediaError::NoAudio)
        ));
    }

    #[test]
    fn the_offer_webrtc_sees_has_only_the_formats_we_take() {
        let offer = OFFER.replace(
            "a=rtpmap:126 telephone-event/8000\r\n",
            "a=rtpmap:110 telephone-event/48000\r\n\
             a=rtpmap:126 telephone-event/8000\r\n\
             a=fmtp:126 0-15\r\n\
             a=rtcp-fb:111 transport-cc\r\n\
             a=rtcp-fb:* nack\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
             a=rtpmap:0 PCMU/8000\r\n",
        );
        let offer = offer.replace(" 111 8 0 126", " 111 8 0 110 126");
        let reduced = keep_audio_formats(&offer, &[0, 8, 126]);
        assert_eq!(
            reduced,
            OFFER
                .replace(" 111 8 0 126", " 8 0 126")
                .replace("a=rtpmap:111 opus/48000/2\r\n", "")
                + "a=fmtp:126 0-15\r\n\
                 a=rtcp-fb:* nack\r\n\
                 m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
                 a=rtpmap:0 PCMU/8000\r\n"
        );
        // A rejected section is left alone; the first active one is reduced.
        let rejected_first = format!("m=audio 0 RTP/AVP 111\r\n{OFFER}");
        assert!(keep_audio_formats(&rejected_first, &[0]).starts_with("m=audio 0 RTP/AVP 111\r\n"));
    }

    #[test]
    fn negotiated_codec_is_the_first_audio_format_of_the_answer() {
        let answer = OFFER.replace(" 111 8 0 126", " 126 8 0");
        let formats = negotiated_formats(&parse_sdp(&answer).unwrap()).unwrap();
        assert_eq!(formats[0].codec, Codec::TelephoneEvent);
        assert_eq!(
            formats.iter().find(|f| is_audio(f.codec)).unwrap().codec,
            Codec::Pcma
        );
    }
}
