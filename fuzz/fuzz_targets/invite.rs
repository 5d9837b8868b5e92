//! Signed invites, as a gateway reads the first frame of a call stream: the wire bytes, and
//! any body signed by the caller's fixed key; an accepted invite is then carried through a
//! whole call on the gateway's state machine, receipt arithmetic included.
#![no_main]

use interlink_fuzz as fixtures;
use interlink_protocol::Timestamp;
use interlink_protocol::call::messages::INVITE_DOMAIN;
use interlink_protocol::call::{GatewayCall, SignedInvite, UsageReceipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(SignedInvite::decode(data, fixtures::now_ms()).ok());
    let sealed = fixtures::seal(INVITE_DOMAIN, data, &fixtures::CALLER_SEED);
    check(SignedInvite::decode(&sealed, fixtures::now_ms()).ok());
});

fn check(invite: Option<SignedInvite>) {
    let Some(invite) = invite else { return };
    let now = fixtures::now_ms();
    let later = |ms: u64| Timestamp(now.0 + ms);
    let _ = UsageReceipt::for_call(invite.invite(), now, later(3_600_000));
    let _ = UsageReceipt::for_call(invite.invite(), later(5), now);
    let mut call = GatewayCall::new(invite, fixtures::gateway_key(), fixtures::timers());
    call.admit(now);
    call.ringing(later(10));
    call.answered_as(fixtures::WEBRTC_ANSWER.into(), None, later(20));
    call.media_started(later(30));
    call.far_end_hung_up(later(90_000));
    // The caller never countersigns: the receipt deadline passes.
    call.handle_timeout(later(90_000));
    call.handle_timeout(later(150_000));
    while call.poll_transmit().is_some() {}
    while call.poll_event().is_some() {}
}
