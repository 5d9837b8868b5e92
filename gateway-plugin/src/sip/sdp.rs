//! The SDP of the SIP leg: plain RTP/AVP with G.711 and telephone events.
//!
//! The gateway's side is small enough to write by hand: one audio stream offering PCMU (0),
//! PCMA (8) and telephone-event/8000 (101), the codec the caller's WebRTC leg will use
//! first, so that the trunk picks it and audio passes through without transcoding. The
//! far end's SDP is read with `rtc::sdp`: the address and port to send RTP to, the G.711
//! codec it chose (the first in its `m=` line) and its telephone-event payload type.

use std::hash::{BuildHasher, RandomState};
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use interlink_protocol::Codec;
use rtc::sdp::SessionDescription;
use rtc::sdp::description::media::MediaDescription;

/// Static payload types of RFC 3551.
pub(crate) const PCMU_PAYLOAD_TYPE: u8 = 0;
pub(crate) const PCMA_PAYLOAD_TYPE: u8 = 8;
/// The dynamic payload type this side gives telephone-event/8000.
pub(crate) const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;
/// G.711 and its telephone events run on an 8 kHz clock.
const CLOCK_RATE: u32 = 8000;

pub(crate) use crate::audio::PayloadFormat;

/// Why the far end's SDP cannot be used.
#[derive(Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SdpError {
    #[error("unreadable SDP: {0}")]
    Unreadable(#[source] rtc::shared::error::Error),
    #[error("no active audio stream")]
    NoAudio,
    #[error("the audio stream is {0}, not plain RTP/AVP")]
    Profile(String),
    #[error("no usable connection address for the audio stream")]
    NoAddress,
    #[error("no G.711 codec among [{}]", .0.join(", "))]
    NoCommonCodec(Vec<String>),
}

/// This side of the SIP leg's media: where its RTP socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalSession {
    pub(crate) addr: SocketAddr,
    /// The `o=` session id, random per call.
    pub(crate) id: u64,
}

impl LocalSession {
    /// A session for RTP at `addr` with a random id.
    pub(crate) fn new(addr: SocketAddr) -> LocalSession {
        // An unpredictable id without a random-number dependency.
        let id = RandomState::new().hash_one(addr) >> 1;
        LocalSession { addr, id }
    }

    /// The INVITE's offer: PCMU and PCMA with `first` first, and telephone-event.
    pub(crate) fn offer(&self, first: Codec) -> String {
        let audio = if first == Codec::Pcma {
            [PCMA_PAYLOAD_TYPE, PCMU_PAYLOAD_TYPE]
        } else {
            [PCMU_PAYLOAD_TYPE, PCMA_PAYLOAD_TYPE]
        };
        self.write(1, &audio, Some(TELEPHONE_EVENT_PAYLOAD_TYPE))
    }

    /// The answer to a new offer inside the call (a re-INVITE or UPDATE): the codec in use,
    /// with the far end's payload types, as session `version`.
    pub(crate) fn answer(
        &self,
        version: u64,
        audio: PayloadFormat,
        telephone_event: Option<u8>,
    ) -> String {
        self.write(version, &[audio.payload_type], telephone_event)
    }

    fn write(&self, version: u64, audio: &[u8], telephone_event: Option<u8>) -> String {
        let ip = self.addr.ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let formats: Vec<String> = audio
            .iter()
            .chain(telephone_event.as_ref())
            .map(u8::to_string)
            .collect();
        let mut sdp = format!(
            "v=0\r\no=interlink {id} {version} IN {family} {ip}\r\ns=interlink\r\n\
             c=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n",
            id = self.id,
            port = self.addr.port(),
            formats = formats.join(" "),
        );
        for &payload_type in audio {
            let name = if payload_type == PCMA_PAYLOAD_TYPE {
                "PCMA"
            } else {
                "PCMU"
            };
            sdp += &format!("a=rtpmap:{payload_type} {name}/{CLOCK_RATE}\r\n");
        }
        if let Some(payload_type) = telephone_event {
            sdp += &format!(
                "a=rtpmap:{payload_type} telephone-event/{CLOCK_RATE}\r\na=fmtp:{payload_type} 0-16\r\n"
            );
        }
        sdp + "a=ptime:20\r\na=sendrecv\r\n"
    }
}

/// The media the far end announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteMedia {
    /// Where to send RTP.
    pub(crate) addr: SocketAddr,
    /// The G.711 codec it will send, with its payload type.
    pub(crate) audio: PayloadFormat,
    /// Its payload type for telephone-event/8000, if it takes them.
    pub(crate) telephone_event: Option<u8>,
}

/// Reads the far end's SDP (the answer in a 200, or a new offer inside the call).
pub(crate) fn parse_remote(sdp: &str) -> Result<RemoteMedia, SdpError> {
    let session = SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes()))
        .map_err(SdpError::Unreadable)?;
    let media = active_audio(&session).ok_or(SdpError::NoAudio)?;
    let profile = media.media_name.protos.join("/");
    if profile != "RTP/AVP" {
        return Err(SdpError::Profile(profile));
    }
    let connection = media
        .connection_information
        .as_ref()
        .or(session.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .and_then(|a| a.address.parse::<IpAddr>().ok())
        .filter(|ip| !ip.is_unspecified())
        .ok_or(SdpError::NoAddress)?;
    let port = u16::try_from(media.media_name.port.value)
        .ok()
        .filter(|&port| port != 0)
        .ok_or(SdpError::NoAddress)?;
    let formats = formats(media);
    let audio = formats
        .iter()
        .find_map(|format| {
            format
                .codec()
                .filter(|codec| matches!(codec, Codec::Pcmu | Codec::Pcma))
                .map(|codec| PayloadFormat {
                    codec,
                    payload_type: format.payload_type,
                })
        })
        .ok_or_else(|| SdpError::NoCommonCodec(formats.iter().map(|f| f.name.clone()).collect()))?;
    let telephone_event = formats
        .iter()
        .find(|format| format.codec() == Some(Codec::TelephoneEvent))
        .map(|format| format.payload_type);
    Ok(RemoteMedia {
        addr: SocketAddr::new(connection, port),
        audio,
        telephone_event,
    })
}

/// The codec the caller's WebRTC leg will settle on for this offer: PCMU if offered, else
/// PCMA (the order in which `WebRtcLeg::answer` prefers them); `None` without G.711.
pub(crate) fn caller_codec(webrtc_offer: &str) -> Option<Codec> {
    let session = SessionDescription::unmarshal(&mut Cursor::new(webrtc_offer.as_bytes())).ok()?;
    let offered: Vec<Codec> = formats(active_audio(&session)?)
        .iter()
        .filter_map(Format::codec)
        .collect();
    [Codec::Pcmu, Codec::Pcma]
        .into_iter()
        .find(|codec| offered.contains(codec))
}

/// The first audio section that is not rejected (port 0).
fn active_audio(session: &SessionDescription) -> Option<&MediaDescription> {
    session
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media.eq_ignore_ascii_case("audio") && m.media_name.port.value != 0)
}

/// One payload format of an `m=` line.
struct Format {
    payload_type: u8,
    name: String,
    clock_rate: u32,
}

impl Format {
    /// The codec, if it is one the bridge carries (at 8 kHz).
    fn codec(&self) -> Option<Codec> {
        if self.clock_rate != CLOCK_RATE {
            return None;
        }
        [Codec::Pcmu, Codec::Pcma, Codec::TelephoneEvent]
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(&self.name))
    }
}

/// The formats of `media` in `m=` order, named by `a=rtpmap` or, for static payload types
/// listed without one, by RFC 3551.
fn formats(media: &MediaDescription) -> Vec<Format> {
    media
        .media_name
        .formats
        .iter()
        .filter_map(|format| {
            let payload_type = format.parse::<u8>().ok()?;
            let rtpmap = media.attributes.iter().find_map(|a| {
                let (pt, encoding) = a.value.as_deref()?.split_once(' ')?;
                (a.key == "rtpmap" && pt.trim() == format).then_some(encoding.trim())
            });
            let (name, clock_rate) = match rtpmap {
                Some(encoding) => {
                    let mut parts = encoding.split('/');
                    let name = parts.next().unwrap_or_default().to_owned();
                    (name, parts.next().and_then(|r| r.parse().ok()).unwrap_or(0))
                }
                None => match payload_type {
                    PCMU_PAYLOAD_TYPE => ("PCMU".to_owned(), CLOCK_RATE),
                    PCMA_PAYLOAD_TYPE => ("PCMA".to_owned(), CLOCK_RATE),
                    _ => (format!("payload type {payload_type}"), 0),
                },
            };
            Some(Format {
                payload_type,
                name,
                clock_rate,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::Ipv4Addr;

    use super::*;

    /// What sipp's built-in `uas` scenario answers.
    const SIPP_ANSWER: &str = "v=0\r\n\
        o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    fn local() -> LocalSession {
        LocalSession {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 40000),
            id: 42,
        }
    }

    #[test]
    fn the_offer_lists_the_callers_codec_first_and_telephone_events() {
        let offer = local().offer(Codec::Pcmu);
        assert_eq!(
            offer,
            "v=0\r\no=interlink 42 1 IN IP4 192.0.2.7\r\ns=interlink\r\nc=IN IP4 192.0.2.7\r\n\
             t=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n\
             a=ptime:20\r\na=sendrecv\r\n"
        );
        assert!(
            local()
                .offer(Codec::Pcma)
                .contains("m=audio 40000 RTP/AVP 8 0 101\r\n")
        );
        // It reads back as what it says: what the far end sees when it echoes it.
        let read = parse_remote(&offer).unwrap();
        assert_eq!(read.addr, local().addr);
        assert_eq!(read.audio.codec, Codec::Pcmu);
        assert_eq!(read.telephone_event, Some(TELEPHONE_EVENT_PAYLOAD_TYPE));
    }

    #[test]
    fn an_answer_to_a_reoffer_keeps_the_codec_in_use() {
        let audio = PayloadFormat {
            codec: Codec::Pcma,
            payload_type: 8,
        };
        let answer = local().answer(3, audio, Some(96));
        assert!(answer.contains("o=interlink 42 3 IN IP4"));
        assert!(answer.contains("m=audio 40000 RTP/AVP 8 96\r\n"));
        assert!(answer.contains("a=rtpmap:96 telephone-event/8000\r\n"));
        assert!(!answer.contains("PCMU"));
    }

    #[test]
    fn sipps_answer_is_read() {
        let remote = parse_remote(SIPP_ANSWER).unwrap();
        assert_eq!(
            remote,
            RemoteMedia {
                addr: "127.0.0.1:6000".parse().unwrap(),
                audio: PayloadFormat {
                    codec: Codec::Pcmu,
                    payload_type: 0
                },
                telephone_event: None,
            }
        );
    }

    #[test]
    fn the_far_ends_choice_and_payload_types_are_kept() {
        // PCMA first, a media-level address over the session one, telephone-event as 96,
        // comfort noise ignored, and a static type listed without rtpmap understood.
        let answer = SIPP_ANSWER
            .replace("RTP/AVP 0", "RTP/AVP 8 0 13 96")
            .replace(
                "a=rtpmap:0 PCMU/8000\r\n",
                "c=IN IP4 10.1.2.3\r\na=rtpmap:96 telephone-event/8000\r\na=rtpmap:13 CN/8000\r\n",
            );
        let remote = parse_remote(&answer).unwrap();
        assert_eq!(remote.addr, "10.1.2.3:6000".parse::<SocketAddr>().unwrap());
        assert_eq!(
            remote.audio,
            PayloadFormat {
                codec: Codec::Pcma,
                payload_type: 8
            }
        );
        assert_eq!(remote.telephone_event, Some(96));
        let ipv6 = SIPP_ANSWER.replace("c=IN IP4 127.0.0.1", "c=IN IP6 ::1");
        assert_eq!(
            parse_remote(&ipv6).unwrap().addr,
            "[::1]:6000".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn unusable_answers_say_why() {
        assert!(matches!(
            parse_remote("not sdp"),
            Err(SdpError::Unreadable(_))
        ));
        assert_eq!(
            parse_remote(&SIPP_ANSWER.replace("m=audio 6000", "m=audio 0")),
            Err(SdpError::NoAudio)
        );
        assert_eq!(
            parse_remote(&SIPP_ANSWER.replace("RTP/AVP", "RTP/SAVP")),
            Err(SdpError::Profile("RTP/SAVP".into()))
        );
        assert_eq!(
            parse_remote(&SIPP_ANSWER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")),
            Err(SdpError::NoAddress)
        );
        assert_eq!(
            parse_remote(
                &SIPP_ANSWER
                    .replace("RTP/AVP 0", "RTP/AVP 9")
                    .replace("0 PCMU/8000", "9 G722/8000")
            ),
            Err(SdpError::NoCommonCodec(vec!["G722".into()]))
        );
    }

    #[test]
    fn the_callers_codec_is_predicted_as_the_webrtc_leg_chooses_it() {
        let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111 8 0 126\r\nc=IN IP4 0.0.0.0\r\n\
            a=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\n";
        assert_eq!(caller_codec(offer), Some(Codec::Pcmu));
        assert_eq!(
            caller_codec(&offer.replace(" 111 8 0 126", " 111 8 126")),
            Some(Codec::Pcma)
        );
        assert_eq!(caller_codec(&offer.replace(" 111 8 0 126", " 111")), None);
    }
}
