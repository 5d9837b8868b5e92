//! The two state machines in virtual time: wired together, and one at a time.

use std::time::Duration;

use super::*;
use crate::call::receipt::tests::invite as sample_invite;
use crate::codec::CodecError;
use crate::identity::SecretKey;
use crate::time::Timestamp;

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn caller_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

fn gateway_key() -> SecretKey {
    SecretKey::from_seed(&[2; 32])
}

fn invite() -> Invite {
    Invite {
        sent_at: T0,
        ..sample_invite(&caller_key(), &gateway_key())
    }
}

/// A caller and a gateway joined by a perfect link, in virtual time.
struct Pair {
    now: Timestamp,
    caller: CallerCall,
    gateway: Option<GatewayCall>,
    caller_events: Vec<CallerEvent>,
    gateway_events: Vec<GatewayEvent>,
    to_gateway: Vec<Frame>,
    to_caller: Vec<Frame>,
}

impl Pair {
    fn new() -> Pair {
        let caller = CallerCall::new(invite(), caller_key(), Timers::default(), T0).unwrap();
        let mut pair = Pair {
            now: T0,
            caller,
            gateway: None,
            caller_events: Vec::new(),
            gateway_events: Vec::new(),
            to_gateway: Vec::new(),
            to_caller: Vec::new(),
        };
        pair.flush();
        pair
    }

    /// An admitted call that has rung, been answered and carries media.
    fn active() -> Pair {
        let mut pair = Pair::new();
        pair.on_gateway(|g, now| g.admit(now));
        pair.on_gateway(|g, now| g.ringing(now));
        pair.on_gateway(|g, now| g.answered("v=0 answer".into(), now));
        pair.flush();
        pair.caller.media_started(pair.now);
        pair.on_gateway(|g, now| g.media_started(now));
        pair.flush();
        pair
    }

    /// Acts on the gateway at the pair's `now`.
    fn on_gateway(&mut self, act: impl FnOnce(&mut GatewayCall, Timestamp)) {
        let now = self.now;
        act(self.gateway(), now);
    }

    fn gateway(&mut self) -> &mut GatewayCall {
        self.gateway
            .as_mut()
            .unwrap_or_else(|| panic!("the invite has not arrived"))
    }

    /// Delivers frames both ways until neither side has anything to send.
    fn flush(&mut self) {
        loop {
            let mut moved = false;
            while let Some(frame) = self.caller.poll_transmit() {
                moved = true;
                self.to_gateway.push(frame.clone());
                match (&mut self.gateway, frame) {
                    (None, Frame::Invite(bytes)) => {
                        let invite = SignedInvite::decode(&bytes, self.now).unwrap();
                        self.gateway =
                            Some(GatewayCall::new(invite, gateway_key(), Timers::default()));
                    }
                    (Some(gateway), frame) => gateway.handle_frame(frame, self.now),
                    (None, _) => {}
                }
            }
            if let Some(gateway) = &mut self.gateway {
                while let Some(frame) = gateway.poll_transmit() {
                    moved = true;
                    self.to_caller.push(frame.clone());
                    self.caller.handle_frame(frame, self.now);
                }
                while let Some(event) = gateway.poll_event() {
                    self.gateway_events.push(event);
                }
            }
            while let Some(event) = self.caller.poll_event() {
                self.caller_events.push(event);
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves time on by `step`, firing each deadline that passes at its time, in order,
    /// and delivering frames.
    fn advance(&mut self, step: Duration) {
        let until = self.now.plus(step);
        for _ in 0..1_000_000 {
            let next = [
                self.caller.poll_timeout(),
                self.gateway.as_ref().and_then(GatewayCall::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(at) if at <= until => self.fire(self.now.max(at)),
                _ => break,
            }
        }
        self.fire(until);
    }

    /// Sets the time to `now`, fires what is due and delivers frames.
    fn fire(&mut self, now: Timestamp) {
        self.now = now;
        self.caller.handle_timeout(self.now);
        if let Some(gateway) = &mut self.gateway {
            gateway.handle_timeout(self.now);
        }
        self.flush();
    }

    fn caller_end(&self) -> &CallEnd {
        self.caller_events
            .iter()
            .find_map(|e| {
                if let CallerEvent::Ended(end) = e {
                    Some(end)
                } else {
                    None
                }
            })
            .unwrap_or_else(|| panic!("the caller's call has not ended: {:?}", self.caller_events))
    }

    fn caller_failure(&self) -> Option<&Failure> {
        self.caller_events.iter().find_map(|e| {
            if let CallerEvent::Failed(f) = e {
                Some(f)
            } else {
                None
            }
        })
    }

    fn gateway_outcome(&self) -> Option<&GatewayOutcome> {
        self.gateway_events.iter().find_map(|e| {
            if let GatewayEvent::Done(o) = e {
                Some(o)
            } else {
                None
            }
        })
    }

    fn far_leg_hung_up(&self) -> bool {
        self.gateway_events
            .iter()
            .any(|e| matches!(e, GatewayEvent::HangUpFarLeg(_)))
    }
}

#[test]
fn a_call_from_invite_to_settled_receipt() {
    let mut pair = Pair::new();
    assert_eq!(pair.caller.state(), CallerState::Inviting);
    assert_eq!(pair.gateway().state(), GatewayState::Admitting);

    pair.on_gateway(|g, now| g.admit(now));
    pair.flush();
    assert_eq!(pair.caller.state(), CallerState::Proceeding);
    pair.on_gateway(|g, now| g.ringing(now));
    pair.flush();
    assert_eq!(pair.caller.state(), CallerState::Ringing);
    pair.advance(Duration::from_secs(3));
    pair.on_gateway(|g, now| g.answered("v=0 answer".into(), now));
    pair.flush();
    assert_eq!(pair.caller.state(), CallerState::Answered);
    assert!(pair.caller_events.contains(&CallerEvent::Answered {
        sdp: "v=0 answer".into(),
        answered_by: None,
    }));
    pair.caller.media_started(pair.now);
    pair.on_gateway(|g, now| g.media_started(now));
    pair.flush();
    assert_eq!(pair.caller.state(), CallerState::Active);
    assert_eq!(pair.gateway().state(), GatewayState::Active);
    assert_eq!(
        pair.caller.poll_timeout(),
        None,
        "no deadline while the call is up"
    );

    pair.advance(Duration::from_secs(61));
    pair.caller.hang_up(pair.now);
    pair.flush();

    let events: Vec<&str> = pair.to_caller.iter().map(Frame::name).collect();
    let (keepalives, events): (Vec<&str>, Vec<&str>) =
        events.into_iter().partition(|name| *name == "KeepAlive");
    assert_eq!(events, ["Trying", "Ringing", "Answer", "Receipt"]);
    // Every 250 ms while it rang for 3 s.
    assert_eq!(keepalives.len(), 12);
    let end = pair.caller_end().clone();
    assert_eq!(
        (end.cause, end.ended_by),
        (ByeCause::CallerHangUp, Party::Caller)
    );
    let ReceiptOutcome::Settled(settled) = &end.receipt else {
        panic!("{:?}", end.receipt)
    };
    // 61 s in 30 s increments: 90 s; 3 per minute → 4.5 → 5; plus 5 setup.
    assert_eq!(settled.receipt().billed_seconds, 90);
    assert_eq!(settled.receipt().amount.minor_units, 10);
    assert_eq!(
        pair.gateway_outcome(),
        Some(&GatewayOutcome::Settled(settled.clone())),
        "both hold the same bytes"
    );
    assert!(pair.caller.is_done() && pair.gateway().is_done());
}

/// The SDP answer sent while ringing reaches the caller once, ahead of the answer; media
/// that reaches the gateway before the answer charges nothing until the answer, and the
/// call is billed from the answer as any other.
#[test]
fn an_early_sdp_answer_reaches_the_caller_while_ringing_and_bills_from_the_answer() {
    let mut pair = Pair::new();
    pair.on_gateway(|g, now| g.admit(now));
    pair.on_gateway(|g, now| g.session_progress("v=0 answer".into(), now));
    pair.on_gateway(|g, now| g.session_progress("v=0 again".into(), now));
    pair.on_gateway(|g, now| g.ringing(now));
    pair.flush();
    assert_eq!(pair.caller.state(), CallerState::Ringing);
    let early: Vec<&CallerEvent> = pair
        .caller_events
        .iter()
        .filter(|e| matches!(e, CallerEvent::SessionProgress { .. }))
        .collect();
    assert_eq!(
        early,
        [&CallerEvent::SessionProgress {
            sdp: "v=0 answer".into()
        }],
        "once, the first"
    );

    // The caller's media connects and reaches the gateway while the callee rings.
    pair.advance(Duration::from_secs(2));
    pair.on_gateway(|g, now| g.media_started(now));
    pair.caller.media_started(pair.now);
    pair.flush();
    assert_eq!(pair.gateway().state(), GatewayState::Ringing);
    assert_eq!(pair.caller.state(), CallerState::Ringing);

    pair.advance(Duration::from_secs(1));
    pair.on_gateway(|g, now| g.answered("v=0 answer".into(), now));
    pair.flush();
    // A straggling early answer after the answer changes nothing.
    pair.caller.handle_frame(
        Frame::SessionProgress {
            sdp: "v=0 late".into(),
        },
        pair.now,
    );
    assert_eq!(pair.caller.state(), CallerState::Answered);
    pair.caller.media_started(pair.now);
    pair.flush();
    assert_eq!(pair.caller.state(), CallerState::Active);
    assert_eq!(pair.gateway().state(), GatewayState::Active);

    pair.advance(Duration::from_secs(20));
    pair.caller.hang_up(pair.now);
    pair.flush();
    let frames: Vec<&str> = pair
        .to_caller
        .iter()
        .map(Frame::name)
        .filter(|name| *name != "KeepAlive")
        .collect();
    assert_eq!(
        frames,
        ["Trying", "SessionProgress", "Ringing", "Answer", "Receipt"]
    );
    let ReceiptOutcome::Settled(settled) = &pair.caller_end().receipt else {
        panic!("{:?}", pair.caller_end().receipt)
    };
    // 20 s from the answer (not 23 from the early answer): one 30 s increment.
    assert_eq!(settled.receipt().billed_seconds, 30);
}

/// An answered call whose media goes as `caller_hears` and `gateway_hears` say, ended by
/// whichever deadline or hang-up comes first after `talk`; the receipt both sides hold.
fn settle_with_media(caller_hears: bool, gateway_hears: bool, talk: Duration) -> (Pair, CallEnd) {
    let mut pair = Pair::new();
    pair.on_gateway(|g, now| g.admit(now));
    pair.on_gateway(|g, now| g.answered("v=0 answer".into(), now));
    pair.flush();
    if caller_hears {
        pair.caller.media_started(pair.now);
    }
    if gateway_hears {
        pair.on_gateway(|g, now| g.media_started(now));
    }
    pair.flush();
    pair.advance(talk);
    pair.caller.hang_up(pair.now);
    pair.flush();
    let end = pair.caller_end().clone();
    (pair, end)
}

fn settled_receipt(pair: &Pair, end: &CallEnd) -> UsageReceipt {
    let ReceiptOutcome::Settled(settled) = &end.receipt else {
        panic!("not settled: {:?}", end.receipt)
    };
    assert_eq!(
        pair.gateway_outcome(),
        Some(&GatewayOutcome::Settled(settled.clone())),
        "both sides hold the same settled receipt"
    );
    settled.receipt().clone()
}

#[test]
fn a_call_through_which_no_media_ever_flowed_is_settled_at_no_charge() {
    // DTLS never completes: neither side hears anything; the gateway's media deadline
    // (10 s after its answer) ends the call.
    let (pair, end) = settle_with_media(false, false, Duration::from_secs(61));
    assert_eq!(end.cause, ByeCause::MediaTimeout);
    let receipt = settled_receipt(&pair, &end);
    assert_eq!(receipt.without_media, Some(ByeCause::MediaTimeout));
    assert_eq!((receipt.billed_seconds, receipt.amount.minor_units), (0, 0));
}

#[test]
fn media_one_way_is_not_charged_whichever_way_it_fails() {
    for (caller_hears, gateway_hears) in [(true, false), (false, true)] {
        let (pair, end) = settle_with_media(caller_hears, gateway_hears, Duration::from_secs(61));
        let receipt = settled_receipt(&pair, &end);
        assert_eq!(
            (receipt.billed_seconds, receipt.amount.minor_units),
            (0, 0),
            "caller hears {caller_hears}, gateway hears {gateway_hears}"
        );
        assert_eq!(receipt.without_media, Some(ByeCause::MediaTimeout));
    }
}

#[test]
fn a_hang_up_before_any_media_is_not_charged_and_says_why() {
    let (pair, end) = settle_with_media(false, false, Duration::from_secs(2));
    assert_eq!(end.cause, ByeCause::CallerHangUp);
    let receipt = settled_receipt(&pair, &end);
    assert_eq!(receipt.without_media, Some(ByeCause::CallerHangUp));
    assert!(!receipt.is_charged());
}

#[test]
fn media_both_ways_is_charged_from_the_answer() {
    let (pair, end) = settle_with_media(true, true, Duration::from_secs(61));
    let receipt = settled_receipt(&pair, &end);
    assert!(receipt.is_charged());
    assert_eq!(receipt.answered_at, T0);
    // 61 s in 30 s increments: 90 s; 3 per minute → 4.5 → 5; plus 5 setup.
    assert_eq!(
        (receipt.billed_seconds, receipt.amount.minor_units),
        (90, 10)
    );
}

#[test]
fn a_gateway_that_charges_for_media_the_caller_never_heard_is_refused() {
    let mut pair = Pair::new();
    pair.on_gateway(|g, now| g.admit(now));
    pair.on_gateway(|g, now| g.answered("v=0 answer".into(), now));
    pair.flush();
    pair.advance(Duration::from_secs(5));
    pair.caller.hang_up(pair.now);
    // The gateway signs a charged receipt although the caller never said it heard.
    let charged = UsageReceipt::for_call(&invite(), T0, pair.now);
    let signed = SignedReceipt::sign(charged, &gateway_key()).unwrap();
    pair.caller
        .handle_frame(Frame::Receipt(signed.as_bytes().to_vec()), pair.now);
    while let Some(event) = pair.caller.poll_event() {
        pair.caller_events.push(event);
    }
    assert!(matches!(
        pair.caller_end().receipt,
        ReceiptOutcome::Refused {
            dispute: ReceiptDispute::ChargedWithoutMedia,
            ..
        }
    ));
    assert_eq!(
        pair.caller.poll_transmit(),
        Some(Frame::Bye(ByeCause::CallerHangUp))
    );
    assert_eq!(
        pair.caller.poll_transmit(),
        Some(Frame::ReceiptRefused(ReceiptDispute::ChargedWithoutMedia))
    );
}

#[test]
fn a_gateway_that_falls_silent_while_ringing_is_given_up_within_the_silence_timer() {
    let timers = Timers::default();
    let mut pair = Pair::new();
    pair.on_gateway(|g, now| g.admit(now));
    pair.on_gateway(|g, now| g.ringing(now));
    pair.flush();
    // Keep-alives hold the call for as long as the callee rings.
    pair.advance(Duration::from_secs(5));
    assert_eq!(pair.caller.state(), CallerState::Ringing);
    // The gateway dies (kill -9; its host gone): nothing more arrives, nor a close.
    let last_heard = pair.now;
    pair.gateway = None;
    pair.advance(timers.silence - Duration::from_millis(1));
    assert_eq!(
        pair.caller.state(),
        CallerState::Ringing,
        "not before the timer"
    );
    pair.advance(Duration::from_millis(1));
    assert_eq!(
        pair.caller_failure(),
        Some(&Failure::Timeout(Phase::Silence))
    );
    assert!(pair.now.since(last_heard) <= timers.silence);
    // It says goodbye, in case the gateway was only slow: its callee stops ringing.
    assert_eq!(
        pair.to_gateway.last(),
        Some(&Frame::Bye(ByeCause::Cancelled))
    );
}

#[test]
fn keepalives_late_by_less_than_the_silence_timer_keep_the_call() {
    let timers = Timers::default();
    let mut caller = CallerCall::new(invite(), caller_key(), timers, T0).unwrap();
    caller.handle_frame(Frame::Trying, T0);
    caller.handle_frame(Frame::Ringing, T0);
    let mut now = T0;
    for _ in 0..20 {
        // Each one a little under the limit after the last, as after a lost packet resent.
        now = now.plus(timers.silence - Duration::from_millis(10));
        caller.handle_timeout(now);
        caller.handle_frame(Frame::KeepAlive, now);
    }
    assert_eq!(caller.state(), CallerState::Ringing);
    // And nothing is expected before Trying: a gateway that never acknowledges is the
    // trying timer's business.
    let mut fresh = CallerCall::new(invite(), caller_key(), timers, T0).unwrap();
    assert_eq!(fresh.poll_timeout(), Some(T0.plus(timers.trying)));
    fresh.handle_timeout(T0.plus(timers.silence));
    assert_eq!(fresh.state(), CallerState::Inviting);
}

#[test]
fn the_answering_identity_reaches_the_caller_within_its_bound() {
    let answered = |identity: &str| {
        let mut pair = Pair::new();
        pair.on_gateway(|g, now| g.admit(now));
        pair.on_gateway(|g, now| g.answered_as("v=0".into(), Some(identity.to_owned()), now));
        pair.flush();
        pair.caller_events.iter().find_map(|event| match event {
            CallerEvent::Answered { answered_by, .. } => Some(answered_by.clone()),
            _ => None,
        })
    };
    let bob = "sip:+447700900123@trunk.example";
    assert_eq!(answered(bob), Some(Some(bob.to_owned())));
    let huge = "x".repeat(messages::MAX_ANSWERED_BY_BYTES + 1);
    assert_eq!(
        answered(&huge),
        Some(None),
        "an oversize identity is dropped"
    );
}

#[test]
fn the_callee_hanging_up_first_reaches_the_caller_with_the_cause() {
    let mut pair = Pair::active();
    pair.advance(Duration::from_secs(10));
    pair.on_gateway(|g, now| g.far_end_hung_up(now));
    pair.flush();
    let end = pair.caller_end();
    assert_eq!(
        (end.cause, end.ended_by),
        (ByeCause::CalleeHangUp, Party::Gateway)
    );
    assert!(matches!(end.receipt, ReceiptOutcome::Settled(_)));
    assert!(matches!(
        pair.gateway_outcome(),
        Some(GatewayOutcome::Settled(_))
    ));
}

#[test]
fn rejects_reach_the_caller_as_failures() {
    for reason in [
        RejectReason::Busy,
        RejectReason::NoRoute,
        RejectReason::OverCapacity,
        RejectReason::Unauthorised,
        RejectReason::PriceChanged { current: None },
    ] {
        let mut pair = Pair::new();
        pair.on_gateway(|g, now| g.reject(reason.clone(), now));
        pair.flush();
        assert_eq!(
            pair.caller_failure(),
            Some(&Failure::Rejected(reason.clone()))
        );
        assert_eq!(
            pair.gateway_outcome(),
            Some(&GatewayOutcome::Rejected(reason))
        );
        assert!(!pair.far_leg_hung_up(), "nothing was placed");
    }
    // A far-end failure after Trying is a reject too, and the far leg needs no hang-up.
    let mut pair = Pair::new();
    pair.on_gateway(|g, now| g.admit(now));
    pair.on_gateway(|g, now| g.far_end_failed(RejectReason::Busy, now));
    pair.flush();
    assert_eq!(
        pair.caller_failure(),
        Some(&Failure::Rejected(RejectReason::Busy))
    );
}

#[test]
fn each_caller_deadline() {
    let timers = Timers::default();
    // No Trying.
    let mut pair = Pair::new();
    pair.advance(timers.trying - Duration::from_millis(1));
    assert_eq!(pair.caller_failure(), None);
    pair.advance(Duration::from_millis(1));
    assert_eq!(
        pair.caller_failure(),
        Some(&Failure::Timeout(Phase::Trying))
    );
    assert_eq!(
        pair.to_gateway.last(),
        Some(&Frame::Bye(ByeCause::Cancelled))
    );
    assert_eq!(
        pair.gateway_outcome(),
        Some(&GatewayOutcome::Cancelled(ByeCause::Cancelled))
    );

    // Trying, then no answer: the caller gives up at its deadline (the gateway's is the same).
    let mut pair = Pair::new();
    pair.on_gateway(|g, now| g.admit(now));
    pair.flush();
    pair.advance(timers.answer);
    assert_eq!(
        pair.caller_failure(),
        Some(&Failure::Timeout(Phase::Answer))
    );
    assert!(pair.far_leg_hung_up());

    // Answered, no media: the caller ends the call and still gets a receipt.
    let mut pair = Pair::new();
    pair.on_gateway(|g, now| g.admit(now));
    pair.on_gateway(|g, now| g.answered("sdp".into(), now));
    pair.flush();
    pair.advance(timers.media);
    let end = pair.caller_end();
    assert_eq!(
        (end.cause, end.ended_by),
        (ByeCause::MediaTimeout, Party::Caller)
    );
    assert!(matches!(end.receipt, ReceiptOutcome::Settled(_)));

    // Ended, no receipt.
    let mut pair = Pair::active();
    pair.gateway = None; // the gateway vanishes
    pair.caller.hang_up(pair.now);
    pair.flush();
    pair.advance(timers.receipt);
    assert_eq!(pair.caller_end().receipt, ReceiptOutcome::Missing);
}

#[test]
fn each_gateway_deadline() {
    let timers = Timers::default();
    // Nobody answers: Reject(Timeout), and the far leg is hung up.
    let mut gateway = admitted_gateway();
    gateway.handle_timeout(T0.plus(timers.answer));
    assert_eq!(
        drain_frames(&mut gateway),
        [Frame::Trying, Frame::Reject(RejectReason::Timeout)]
    );
    assert_eq!(
        drain_events(&mut gateway),
        [
            GatewayEvent::HangUpFarLeg(ByeCause::Cancelled),
            GatewayEvent::Done(GatewayOutcome::Rejected(RejectReason::Timeout))
        ]
    );

    // Answered, no media: Bye and a receipt for the seconds since the answer.
    let mut gateway = admitted_gateway();
    gateway.answered("sdp".into(), T0);
    gateway.handle_timeout(T0.plus(timers.media));
    let frames = drain_frames(&mut gateway);
    assert_eq!(frames[2], Frame::Bye(ByeCause::MediaTimeout));
    assert!(matches!(frames[3], Frame::Receipt(_)));
    assert_eq!(gateway.state(), GatewayState::Ending);

    // No countersignature: the gateway keeps its own signed receipt.
    gateway.handle_timeout(T0.plus(timers.media + timers.receipt));
    let outcome = drain_events(&mut gateway).pop();
    assert!(
        matches!(
            outcome,
            Some(GatewayEvent::Done(GatewayOutcome::Unacknowledged(_)))
        ),
        "{outcome:?}"
    );
}

fn admitted_gateway() -> GatewayCall {
    let invite = SignedInvite::sign(invite(), &caller_key()).unwrap();
    let mut gateway = GatewayCall::new(invite, gateway_key(), Timers::default());
    gateway.admit(T0);
    gateway
}

fn drain_frames(gateway: &mut GatewayCall) -> Vec<Frame> {
    std::iter::from_fn(|| gateway.poll_transmit()).collect()
}

fn drain_events(gateway: &mut GatewayCall) -> Vec<GatewayEvent> {
    std::iter::from_fn(|| gateway.poll_event()).collect()
}

/// Brings a pair to the named caller state.
fn pair_in(state: CallerState) -> Pair {
    let mut pair = Pair::new();
    let now = pair.now;
    match state {
        CallerState::Inviting => {}
        CallerState::Proceeding => pair.gateway().admit(now),
        CallerState::Ringing => {
            pair.gateway().admit(now);
            pair.gateway().ringing(now);
        }
        CallerState::Answered | CallerState::Active => {
            pair.gateway().admit(now);
            pair.gateway().answered("sdp".into(), now);
        }
        CallerState::Ending | CallerState::Done => {
            pair = Pair::active();
        }
    }
    pair.flush();
    if state == CallerState::Active {
        pair.caller.media_started(pair.now);
        pair.on_gateway(|g, now| g.media_started(now));
        pair.flush();
    }
    if state == CallerState::Ending {
        // The caller hangs up; the receipt is in flight, not yet delivered.
        pair.caller.hang_up(pair.now);
        let bye = pair.caller.poll_transmit();
        assert_eq!(bye, Some(Frame::Bye(ByeCause::CallerHangUp)));
    }
    if state == CallerState::Done {
        pair.caller.hang_up(pair.now);
        pair.flush();
    }
    assert_eq!(pair.caller.state(), state);
    pair
}

const ALL_STATES: [CallerState; 7] = [
    CallerState::Inviting,
    CallerState::Proceeding,
    CallerState::Ringing,
    CallerState::Answered,
    CallerState::Active,
    CallerState::Ending,
    CallerState::Done,
];

#[test]
fn the_caller_hanging_up_in_each_state() {
    for state in ALL_STATES {
        let mut pair = pair_in(state);
        let events_before = pair.caller_events.len();
        pair.caller.hang_up(pair.now);
        let sent = pair.caller.poll_transmit();
        match state {
            CallerState::Inviting | CallerState::Proceeding | CallerState::Ringing => {
                assert_eq!(sent, Some(Frame::Bye(ByeCause::Cancelled)), "{state:?}");
                assert_eq!(
                    pair.caller_failure_after(events_before),
                    Some(Failure::Cancelled),
                    "{state:?}"
                );
            }
            CallerState::Answered | CallerState::Active => {
                assert_eq!(sent, Some(Frame::Bye(ByeCause::CallerHangUp)), "{state:?}");
                assert_eq!(pair.caller.state(), CallerState::Ending, "{state:?}");
            }
            CallerState::Ending | CallerState::Done => {
                assert_eq!(sent, None, "{state:?}: nothing more to say")
            }
        }
    }
}

impl Pair {
    fn caller_failure_after(&mut self, index: usize) -> Option<Failure> {
        while let Some(event) = self.caller.poll_event() {
            self.caller_events.push(event);
        }
        self.caller_events[index..].iter().find_map(|e| {
            if let CallerEvent::Failed(f) = e {
                Some(f.clone())
            } else {
                None
            }
        })
    }
}

#[test]
fn a_bye_from_the_gateway_in_each_caller_state() {
    for state in ALL_STATES {
        let mut pair = pair_in(state);
        let events_before = pair.caller_events.len();
        pair.caller
            .handle_frame(Frame::Bye(ByeCause::CalleeHangUp), pair.now);
        match state {
            CallerState::Inviting | CallerState::Proceeding | CallerState::Ringing => assert_eq!(
                pair.caller_failure_after(events_before),
                Some(Failure::EndedByGateway(ByeCause::CalleeHangUp)),
                "{state:?}"
            ),
            CallerState::Answered | CallerState::Active => {
                assert_eq!(
                    pair.caller.state(),
                    CallerState::Ending,
                    "{state:?}: waits for the receipt"
                );
                assert_eq!(pair.caller.poll_transmit(), None, "{state:?}: no Bye back");
            }
            // Crossing Byes, or a late one: ignored.
            CallerState::Ending | CallerState::Done => {
                assert_eq!(pair.caller.state(), state, "{state:?}");
                assert_eq!(pair.caller.poll_transmit(), None, "{state:?}");
            }
        }
    }
}

#[test]
fn a_bye_from_the_caller_in_each_gateway_state() {
    let bye = Frame::Bye(ByeCause::CallerHangUp);
    // Admitting: cancelled, nothing placed, nothing to hang up.
    let invite = SignedInvite::sign(invite(), &caller_key()).unwrap();
    let mut gateway = GatewayCall::new(invite, gateway_key(), Timers::default());
    gateway.handle_frame(bye.clone(), T0);
    assert_eq!(
        drain_events(&mut gateway),
        [GatewayEvent::Done(GatewayOutcome::Cancelled(
            ByeCause::CallerHangUp
        ))]
    );

    // Trying and Ringing: cancelled, and the far leg is hung up.
    for ring in [false, true] {
        let mut gateway = admitted_gateway();
        if ring {
            gateway.ringing(T0);
        }
        gateway.handle_frame(bye.clone(), T0);
        assert_eq!(
            drain_events(&mut gateway),
            [
                GatewayEvent::HangUpFarLeg(ByeCause::CallerHangUp),
                GatewayEvent::Done(GatewayOutcome::Cancelled(ByeCause::CallerHangUp))
            ]
        );
    }

    // Answered and Active: the far leg is hung up and the receipt goes out (no Bye back).
    for media in [false, true] {
        let mut gateway = admitted_gateway();
        gateway.answered("sdp".into(), T0);
        if media {
            gateway.media_started(T0);
        }
        gateway.handle_frame(bye.clone(), T0.plus(Duration::from_secs(5)));
        let frames = drain_frames(&mut gateway);
        assert!(
            matches!(frames.last(), Some(Frame::Receipt(_))),
            "{frames:?}"
        );
        assert!(!frames.iter().any(|f| matches!(f, Frame::Bye(_))));
        assert_eq!(gateway.state(), GatewayState::Ending);
        // A second Bye while Ending changes nothing.
        gateway.handle_frame(bye.clone(), T0.plus(Duration::from_secs(6)));
        assert!(drain_frames(&mut gateway).is_empty());
        assert_eq!(gateway.state(), GatewayState::Ending);
    }
}

#[test]
fn duplicate_and_out_of_order_frames() {
    // Ringing before Trying, and Answer before either, are understood.
    let mut caller = CallerCall::new(invite(), caller_key(), Timers::default(), T0).unwrap();
    caller.handle_frame(Frame::Ringing, T0);
    assert_eq!(caller.state(), CallerState::Ringing);
    let mut caller = CallerCall::new(invite(), caller_key(), Timers::default(), T0).unwrap();
    caller.handle_frame(
        Frame::Answer {
            sdp: "a".into(),
            answered_by: None,
        },
        T0,
    );
    assert_eq!(caller.state(), CallerState::Answered);

    // Duplicates and stragglers change nothing.
    let mut pair = Pair::active();
    let events = pair.caller_events.len();
    for frame in [
        Frame::Trying,
        Frame::Ringing,
        Frame::Answer {
            sdp: "again".into(),
            answered_by: None,
        },
    ] {
        pair.caller.handle_frame(frame, pair.now);
    }
    assert_eq!(pair.caller.state(), CallerState::Active);
    assert_eq!(pair.caller.poll_event(), None);
    assert_eq!(pair.caller_events.len(), events);
    let invite_bytes = pair.to_gateway[0].clone();
    pair.on_gateway(|g, now| g.handle_frame(invite_bytes, now));
    assert_eq!(
        pair.gateway().state(),
        GatewayState::Active,
        "a repeated invite is ignored"
    );

    // Nonsense is a protocol error that ends the call: a receipt before the end…
    let mut pair = Pair::active();
    pair.caller
        .handle_frame(Frame::Receipt(vec![1, 2, 3]), pair.now);
    assert_eq!(
        pair.caller.poll_transmit(),
        Some(Frame::Bye(ByeCause::ProtocolError))
    );
    assert_eq!(pair.caller.state(), CallerState::Ending);
    // …an invite sent to the caller…
    let mut caller = CallerCall::new(invite(), caller_key(), Timers::default(), T0).unwrap();
    caller.handle_frame(Frame::Invite(vec![]), T0);
    assert!(matches!(
        std::iter::from_fn(|| caller.poll_event()).last(),
        Some(CallerEvent::Failed(Failure::ProtocolError(_)))
    ));
    // …or the gateway told `Trying` by the caller.
    let mut gateway = admitted_gateway();
    gateway.handle_frame(Frame::Trying, T0);
    assert_eq!(gateway.state(), GatewayState::Done);
    assert_eq!(
        drain_frames(&mut gateway).last(),
        Some(&Frame::Bye(ByeCause::ProtocolError))
    );

    // After the end, frames are ignored.
    let mut pair = pair_in(CallerState::Done);
    pair.caller.handle_frame(
        Frame::Answer {
            sdp: "late".into(),
            answered_by: None,
        },
        pair.now,
    );
    pair.caller
        .handle_frame(Frame::Receipt(vec![0; 10]), pair.now);
    assert_eq!(pair.caller.poll_transmit(), None);
    assert_eq!(pair.caller.poll_event(), None);
}

#[test]
fn a_lost_connection_in_each_phase() {
    let mut pair = pair_in(CallerState::Ringing);
    pair.caller.connection_lost(pair.now);
    pair.on_gateway(|g, now| g.connection_lost(now));
    pair.flush();
    assert_eq!(pair.caller_failure(), Some(&Failure::ConnectionLost));
    assert_eq!(
        pair.gateway_outcome(),
        Some(&GatewayOutcome::Cancelled(ByeCause::ConnectionLost))
    );
    assert!(pair.far_leg_hung_up());

    let mut pair = Pair::active();
    pair.advance(Duration::from_secs(30));
    pair.caller.connection_lost(pair.now);
    pair.on_gateway(|g, now| g.connection_lost(now));
    pair.flush();
    let end = pair.caller_end();
    assert_eq!(
        (end.cause, &end.receipt),
        (ByeCause::ConnectionLost, &ReceiptOutcome::Missing)
    );
    let Some(GatewayOutcome::Unacknowledged(receipt)) = pair.gateway_outcome() else {
        panic!("{:?}", pair.gateway_events)
    };
    assert_eq!(
        receipt.receipt().billed_seconds,
        30,
        "billed for the time until the loss"
    );
}

#[test]
fn an_overcharging_gateway_is_refused_and_told_why() {
    let mut pair = Pair::active();
    pair.advance(Duration::from_secs(20));
    pair.caller.hang_up(pair.now);
    // The caller's Bye reaches the gateway, whose receipt we replace with a padded one.
    while let Some(frame) = pair.caller.poll_transmit() {
        pair.on_gateway(|g, now| g.handle_frame(frame, now));
    }
    let honest = match pair.gateway().poll_transmit() {
        Some(Frame::Receipt(bytes)) => SignedReceipt::decode(&bytes).unwrap(),
        other => panic!("{other:?}"),
    };
    let mut padded = honest.receipt().clone();
    padded.amount.minor_units *= 2;
    let padded = SignedReceipt::sign(padded, &gateway_key()).unwrap();
    pair.caller
        .handle_frame(Frame::Receipt(padded.as_bytes().to_vec()), pair.now);
    let refusal = pair.caller.poll_transmit();
    assert!(
        matches!(
            refusal,
            Some(Frame::ReceiptRefused(ReceiptDispute::WrongAmount { .. }))
        ),
        "{refusal:?}"
    );
    pair.flush();
    assert!(matches!(
        pair.caller_end().receipt,
        ReceiptOutcome::Refused {
            dispute: ReceiptDispute::WrongAmount { .. },
            ..
        }
    ));
    let refusal = refusal.unwrap_or_else(|| panic!("refusal"));
    pair.on_gateway(|g, now| g.handle_frame(refusal, now));
    pair.flush();
    assert!(matches!(
        pair.gateway_outcome(),
        Some(GatewayOutcome::Disputed { .. })
    ));

    // A receipt with a broken signature is refused as unreadable.
    let mut pair = Pair::active();
    pair.caller.hang_up(pair.now);
    let _ = pair.caller.poll_transmit();
    pair.caller
        .handle_frame(Frame::Receipt(vec![7; 200]), pair.now);
    assert_eq!(
        pair.caller.poll_transmit(),
        Some(Frame::ReceiptRefused(ReceiptDispute::Unreadable))
    );
}

#[test]
fn frames_over_the_size_limit_are_refused() {
    let huge = Frame::Answer {
        sdp: "a".repeat(messages::MAX_FRAME_BYTES),
        answered_by: None,
    };
    assert!(matches!(huge.encode(), Err(CodecError::TooLarge { .. })));
    assert!(matches!(
        Frame::decode(&vec![0u8; messages::MAX_FRAME_BYTES + 1]),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(Frame::decode(&[200, 1, 2]).is_err(), "unknown frame tag");
    assert_eq!(
        Frame::decode(&Frame::Trying.encode().unwrap_or_default()),
        Ok(Frame::Trying)
    );

    let mut long_sdp = invite();
    long_sdp.sdp_offer = "a".repeat(messages::MAX_SDP_BYTES + 1);
    assert!(matches!(
        SignedInvite::sign(long_sdp, &caller_key()),
        Err(messages::InviteError::InvalidField {
            field: "sdp_offer",
            ..
        })
    ));
}

#[test]
fn invites_are_verified() {
    let signed = SignedInvite::sign(invite(), &caller_key()).unwrap();
    assert_eq!(
        SignedInvite::decode(signed.as_bytes(), T0).map(|s| s.invite().clone()),
        Ok(invite())
    );

    let mut bytes = signed.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(SignedInvite::decode(&bytes, T0).is_err());

    let late = T0.plus(messages::MAX_INVITE_SKEW + Duration::from_secs(1));
    assert!(matches!(
        SignedInvite::decode(signed.as_bytes(), late),
        Err(messages::InviteError::Stale { .. })
    ));

    assert!(matches!(
        SignedInvite::sign(invite(), &gateway_key()),
        Err(messages::InviteError::Envelope(
            crate::envelope::Error::WrongSigner { .. }
        ))
    ));

    let mut uncovered = invite();
    uncovered.prefix = crate::destination::Prefix::new("33").unwrap();
    assert!(matches!(
        SignedInvite::sign(uncovered, &caller_key()),
        Err(messages::InviteError::InvalidField {
            field: "prefix",
            ..
        })
    ));
}
