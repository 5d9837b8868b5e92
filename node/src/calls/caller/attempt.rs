//! One attempt: invite one gateway, drive the caller's call machine until it ends, and
//! measure each phase.

use std::time::{Duration, Instant};

use interlink_protocol::call::{
    CallEnd, CallId, CallerCall, CallerEvent, CallerState, Failure, Invite, OfferRef,
};
use interlink_protocol::offer::Tariff;
use tokio::sync::watch;

use crate::calls::media::{MediaReport, ToneCall};
use crate::calls::sleep_until;
use crate::calls::wire::{self, CALL_PROTOCOL};
use crate::clock::SessionClock;
use crate::store::Role;

use super::*;

/// An attempt that reached the answer, and what the caller measured.
pub(super) struct Answered {
    pub(super) call_id: CallId,
    pub(super) end: CallEnd,
    pub(super) media: MediaReport,
    pub(super) invite_to_answer: Duration,
    pub(super) invited_at: Instant,
    pub(super) answered_at: Instant,
    pub(super) answered_by: Option<String>,
    pub(super) first_media_at: Option<Instant>,
    pub(super) timeline: Timeline,
}

pub(super) enum Attempted {
    Answered(Box<Answered>),
    Failed {
        call_id: CallId,
        failure: Failure,
        /// Nothing came back from the gateway: it did not take the call (a gateway that
        /// reads an invite answers `Trying` or a rejection), so inviting it again is safe.
        unheard: bool,
    },
}

/// When each frame of the setup arrived, for [`SetupPhases`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Timeline {
    pub(super) stream: Duration,
    pub(super) trying: Option<Instant>,
    pub(super) early_answer: Option<Instant>,
    pub(super) ringing: Option<Instant>,
}

/// Invites one gateway and, if it answers, holds the call until it ends.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    context: &CallerContext,
    options: &CallOptions,
    candidate: &Planned,
    tariff: Tariff,
    started: Instant,
    deadline: Instant,
    media: &mut CallerMedia,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Attempted, CallError> {
    let call_id = CallId::from_bytes(rand::random());
    let failed = |failure| {
        Ok(Attempted::Failed {
            call_id,
            unheard: matches!(failure, Failure::ConnectionLost),
            failure,
        })
    };
    let name = candidate.name().to_owned();
    let Some(peer) = candidate.peer_id() else {
        return failed(Failure::ConnectionLost);
    };
    let addresses = candidate.offer.offer().addresses.clone();
    let connecting = Instant::now();
    let connect = context.client.open_stream(peer, addresses, CALL_PROTOCOL);
    let connect_within = options
        .timers
        .trying
        .min(deadline.saturating_duration_since(Instant::now()));
    let stream = match tokio::time::timeout(connect_within, connect).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(reason)) => {
            tracing::warn!(gateway = %name, %reason, "cannot open a call stream");
            return failed(Failure::ConnectionLost);
        }
        Err(_) => {
            tracing::warn!(gateway = %name, "no call stream within {connect_within:?}");
            return failed(Failure::Timeout(interlink_protocol::call::Phase::Trying));
        }
    };

    let mut timeline = Timeline {
        stream: connecting.elapsed(),
        ..Timeline::default()
    };
    let _active = context.client.metrics().call_started(Role::Caller);
    let mut user_hang_up = options.hang_up.clone();
    let (mut tone, sdp_offer, mut external_started, mut external_hang_up) = match media {
        CallerMedia::Tone => {
            let (tone, sdp) = ToneCall::offer(&context.media, options.tone_hz).await?;
            (Some(tone), sdp, None, user_hang_up.as_mut())
        }
        CallerMedia::External(external) => (
            None,
            external.sdp_offer.clone(),
            Some(&mut external.media_started),
            Some(&mut external.hang_up),
        ),
    };
    // The call's deadlines and the times its receipt signs run on the monotonic clock.
    let time = SessionClock::start();
    let invite = Invite {
        call_id,
        destination: options.destination.clone(),
        offer: OfferRef {
            provider: candidate.offer.provider(),
            seq: candidate.offer.seq(),
        },
        prefix: candidate.route.prefix.clone(),
        tariff,
        caller: context.key.provider_id(),
        sdp_offer,
        sent_at: time.now(),
    };
    let invited_at = Instant::now();
    let mut call = CallerCall::new(invite, context.key.clone(), options.timers, time.now())?;
    let (mut writer, mut frames) = wire::split(stream);
    let mut answered_at: Option<Instant> = None;
    let mut answered: Option<String> = None;
    let mut first_media_at: Option<Instant> = None;
    let mut writable = true;
    let mut heard = false;

    let result = loop {
        while let Some(frame) = call.poll_transmit() {
            if writable && !wire::send_in_time(&mut writer, &frame).await {
                writable = false;
                call.connection_lost(time.now());
            }
        }
        let mut outcome = None;
        while let Some(event) = call.poll_event() {
            match event {
                CallerEvent::Trying => {
                    timeline.trying = Some(Instant::now());
                    progress(Progress::Trying {
                        gateway: name.clone(),
                    });
                }
                CallerEvent::Ringing => {
                    timeline.ringing = Some(Instant::now());
                    progress(Progress::Ringing {
                        gateway: name.clone(),
                    });
                }
                // The node's own media connects while the callee rings. An external
                // endpoint's one offer may meet several gateways in turn (failover), and
                // a browser takes one answer per offer: it gets the answer at the answer.
                CallerEvent::SessionProgress { sdp } => {
                    let Some(tone) = &mut tone else { continue };
                    timeline.early_answer = Some(Instant::now());
                    let accepted = tone.accept_early_answer(&sdp).await;
                    progress(Progress::SessionProgress {
                        gateway: name.clone(),
                        sdp_answer: sdp,
                    });
                    if let Err(e) = accepted {
                        tracing::warn!(error = %e, "the gateway's early SDP answer is unusable; hanging up");
                        call.hang_up(time.now());
                    }
                }
                CallerEvent::Answered { sdp, answered_by } => {
                    let now = Instant::now();
                    answered_at = Some(now);
                    // It is shown to people: no control characters from the network.
                    answered =
                        answered_by.map(|who| who.chars().filter(|c| !c.is_control()).collect());
                    let accepted = match &mut tone {
                        Some(tone) => tone.accept_answer(&sdp).await,
                        None => Ok(()),
                    };
                    progress(Progress::Answered {
                        gateway: name.clone(),
                        after: now - started,
                        answered_by: answered.clone(),
                        sdp_answer: sdp,
                    });
                    if let Err(e) = accepted {
                        tracing::warn!(error = %e, "the gateway's SDP answer is unusable; hanging up");
                        call.hang_up(time.now());
                    }
                }
                CallerEvent::Failed(failure) => outcome = Some(Err(failure)),
                CallerEvent::Ended(end) => outcome = Some(Ok(end)),
            }
        }
        if let Some(outcome) = outcome {
            // Let the last frames (a Bye, the countersignature) go out.
            while let Some(frame) = call.poll_transmit() {
                if writable {
                    wire::send_in_time(&mut writer, &frame).await;
                }
            }
            break outcome;
        }
        let call_deadline = call.poll_timeout().map(|at| time.instant_of(at));
        // The node's own media hangs up after the hold time; an external endpoint's user
        // hangs up when they please, or gives up before the answer.
        let hang_up_at = answered_at
            .filter(|_| tone.is_some())
            .map(|at| tokio::time::Instant::from_std(at + options.hold_for));
        let give_up_at = answered_at
            .is_none()
            .then(|| tokio::time::Instant::from_std(deadline));
        let waiting_for_media = answered_at.is_some() && first_media_at.is_none();
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(frame)) => {
                    heard = true;
                    call.handle_frame(frame, time.now());
                }
                Some(Err(e)) => {
                    tracing::info!(error = %e, "call stream failed");
                    call.connection_lost(time.now());
                }
                None => call.connection_lost(time.now()),
            },
            first = first_media(tone.as_ref(), external_started.as_deref_mut(), options.timers.media), if waiting_for_media => {
                if first {
                    let now = Instant::now();
                    first_media_at = Some(now);
                    progress(Progress::MediaStarted { after: now - started });
                    call.media_started(time.now());
                }
            }
            () = sleep_until(call_deadline) => call.handle_timeout(time.now()),
            () = sleep_until(hang_up_at), if matches!(call.state(), CallerState::Answered | CallerState::Active) => {
                progress(Progress::HangingUp);
                call.hang_up(time.now());
            }
            () = turned_on(external_hang_up.as_deref_mut()), if !matches!(call.state(), CallerState::Ending | CallerState::Done) => {
                progress(Progress::HangingUp);
                call.hang_up(time.now());
            }
            () = sleep_until(give_up_at) => call.hang_up(time.now()),
        }
    };
    wire::close_in_time(&mut writer).await;
    let media = match tone {
        Some(tone) => tone.close().await,
        // The node does not see an external endpoint's media.
        None => MediaReport::default(),
    };
    match result {
        Err(failure) => Ok(Attempted::Failed {
            call_id,
            unheard: !heard && matches!(failure, Failure::ConnectionLost),
            failure,
        }),
        Ok(end) => Ok(Attempted::Answered(Box::new(Answered {
            call_id,
            end,
            media,
            invite_to_answer: answered_at.map(|a| a - invited_at).unwrap_or_default(),
            invited_at,
            answered_at: answered_at.unwrap_or(invited_at),
            answered_by: answered,
            first_media_at,
            timeline,
        }))),
    }
}

/// Whether the first media packet arrived: at the node's own endpoint within `deadline`, or
/// as an external endpoint reports (the call's own media deadline bounds that wait).
async fn first_media(
    tone: Option<&ToneCall>,
    external: Option<&mut watch::Receiver<bool>>,
    deadline: Duration,
) -> bool {
    match (tone, external) {
        (Some(tone), _) => tone.wait_first_packet(deadline).await.is_ok(),
        (None, Some(started)) => {
            if started.wait_for(|on| *on).await.is_ok() {
                true
            } else {
                // Nobody left to report it: the media deadline decides.
                std::future::pending().await
            }
        }
        (None, None) => std::future::pending().await,
    }
}

/// Waits until the endpoint's `signal` turns true or its sender is dropped.
async fn turned_on(signal: Option<&mut watch::Receiver<bool>>) {
    match signal {
        Some(signal) => {
            let _ = signal.wait_for(|on| *on).await;
        }
        None => std::future::pending().await,
    }
}
