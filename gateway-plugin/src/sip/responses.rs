//! What the trunk's SIP responses mean for the call protocol, and who answered.
//!
//! | SIP | call protocol |
//! |---|---|
//! | 180, 183 | `Ringing` |
//! | 2xx | `Answer` |
//! | 486, 600, 603 | `Reject(Busy)` |
//! | 404, 484, 604 | `Reject(NoRoute)` |
//! | 401, 403, 407 | `Reject(Unauthorised)` |
//! | 408, 480, 503, any other, no response in time | `Reject(Unavailable)` |
//!
//! A 603 Decline is the callee refusing, as busy is; 401 and 407 reach here only when the
//! trunk refused the gateway's credentials (or it has none).

use interlink_protocol::call::RejectReason;
use interlink_protocol::call::messages::MAX_ANSWERED_BY_BYTES;

/// Whether a provisional response means the callee is being alerted.
pub(crate) fn is_ringing(code: u16) -> bool {
    matches!(code, 180 | 183)
}

/// What a final response means: `Ok` for an answer, else why the call failed.
pub(crate) fn final_outcome(code: u16) -> Result<(), RejectReason> {
    match code {
        200..=299 => Ok(()),
        486 | 600 | 603 => Err(RejectReason::Busy),
        404 | 484 | 604 => Err(RejectReason::NoRoute),
        401 | 403 | 407 => Err(RejectReason::Unauthorised),
        _ => Err(RejectReason::Unavailable),
    }
}

/// The identity in a `P-Asserted-Identity` or `To` header value: the URI between `<` and
/// `>` if there is one (the display name and parameters dropped), else the value up to its
/// first parameter. Control characters are dropped and the result is bounded.
pub(crate) fn identity_of(header_value: &str) -> Option<String> {
    // A header may list several identities (a SIP URI and a tel URI): the first is taken.
    let value = header_value.trim();
    let uri = match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split([';', ',']).next().unwrap_or_default(),
    };
    let mut identity = String::new();
    for c in uri.trim().chars().filter(|c| !c.is_control()) {
        if identity.len() + c.len_utf8() > MAX_ANSWERED_BY_BYTES {
            break;
        }
        identity.push(c);
    }
    (!identity.is_empty()).then_some(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_map_to_the_call_protocol() {
        assert!(is_ringing(180) && is_ringing(183));
        assert!(!is_ringing(100) && !is_ringing(181));
        assert_eq!(final_outcome(200), Ok(()));
        assert_eq!(final_outcome(202), Ok(()));
        for (code, reason) in [
            (486, RejectReason::Busy),
            (600, RejectReason::Busy),
            (603, RejectReason::Busy),
            (404, RejectReason::NoRoute),
            (484, RejectReason::NoRoute),
            (604, RejectReason::NoRoute),
            (403, RejectReason::Unauthorised),
            (401, RejectReason::Unauthorised),
            (407, RejectReason::Unauthorised),
            (408, RejectReason::Unavailable),
            (503, RejectReason::Unavailable),
            (480, RejectReason::Unavailable),
            (487, RejectReason::Unavailable),
            (500, RejectReason::Unavailable),
            (302, RejectReason::Unavailable),
        ] {
            assert_eq!(final_outcome(code), Err(reason), "{code}");
        }
    }

    #[test]
    fn identities_are_read_from_header_values() {
        assert_eq!(
            identity_of("\"Bob\" <sip:+447700900123@trunk.example;user=phone>").as_deref(),
            Some("sip:+447700900123@trunk.example;user=phone")
        );
        assert_eq!(
            identity_of("<sip:447700900123@127.0.0.1:5070>;tag=1234").as_deref(),
            Some("sip:447700900123@127.0.0.1:5070")
        );
        assert_eq!(
            identity_of("tel:+447700900123;verstat=TN-Validation-Passed").as_deref(),
            Some("tel:+447700900123")
        );
        assert_eq!(
            identity_of("<sip:bob@x>, <tel:+447700900123>").as_deref(),
            Some("sip:bob@x")
        );
        assert_eq!(identity_of("  "), None);
        assert_eq!(
            identity_of("sip:a\u{1b}[31m@x").as_deref(),
            Some("sip:a[31m@x")
        );
        assert_eq!(
            identity_of(&"x".repeat(1000)).map(|i| i.len()),
            Some(MAX_ANSWERED_BY_BYTES)
        );
        assert_eq!(
            identity_of(&"é".repeat(200)).map(|i| i.len()),
            Some(MAX_ANSWERED_BY_BYTES)
        );
    }
}
