//! One bridged call, from the caller's admitted `Invite` to the end of both legs.
//!
//! The task places the SIP leg first: an RTP socket on the media address, an INVITE to
//! the trunk whose SDP offers the codec the caller's WebRTC leg will use first, the
//! caller's identity in `From` and `P-Asserted-Identity`. While it waits for the final
//! response it reports ringing (180, 183), and cancels (CANCEL) when the node hangs up or
//! the callee rings too long. A failure maps to a reject reason
//! ([`responses`](crate::sip::responses)). On a 2xx (which the stack ACKs) it reads the
//! trunk's SDP, answers the caller's WebRTC offer, reports the answer with the answering
//! identity, and relays media ([`RtpRelay`]) while it watches both sides: a BYE from the
//! trunk, the node's hang-up (a BYE to the trunk), the caller's media ending, the trunk's
//! RTP stopping. Re-INVITEs and UPDATEs from the trunk are answered with the codec in use.
//! Every SIP wait has a deadline; the task always removes its dialog from the stack.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use interlink_protocol::call::{ByeCause, RejectReason};
use rsipstack::dialog::DialogId;
use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TransactionHandle};
use rsipstack::dialog::invitation::{InviteAsyncResult, InviteOption};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, PAssertedIdentity, Request, Response, StatusCode, Uri};
use rsipstack::transport::SipAddr;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::gateway::{IncomingCall, LegEvent};
use crate::sip::Shared;
use crate::sip::endpoint::resolve;
use crate::sip::responses::{final_outcome, identity_of, is_ringing};
use crate::sip::rtp_relay::{RelayEvent, RtpRelay};
use crate::sip::sdp::{self, LocalSession};
use crate::sip::trunk::Transport;
use crate::webrtc_leg::WebRtcLeg;

/// The longest wait for a CANCEL or BYE to be answered, and for the INVITE to end after a
/// CANCEL: the node gives a back-end 5 s to release a leg.
const SIGNALLING_DEADLINE: Duration = Duration::from_secs(4);

/// Runs one bridged call until both legs are over.
pub(crate) async fn run(
    call: IncomingCall,
    shared: Arc<Shared>,
    hung_up: oneshot::Receiver<ByeCause>,
) {
    let span = tracing::info_span!("sip", call = %call.call_id);
    Bridge {
        shared,
        events: call.events.clone(),
        hung_up,
    }
    .run(call)
    .instrument(span)
    .await;
}

/// What the call's task holds throughout.
struct Bridge {
    shared: Arc<Shared>,
    events: mpsc::Sender<LegEvent>,
    hung_up: oneshot::Receiver<ByeCause>,
}

/// A SIP leg whose INVITE is out.
struct Invited {
    dialog: InviteDialog,
    invite: JoinHandle<InviteAsyncResult>,
    states: DialogStateReceiver,
    socket: UdpSocket,
    local: LocalSession,
}

/// How the wait for the final response ended.
enum Ringing {
    Answered {
        id: DialogId,
        response: Response,
    },
    /// Failed, cancelled or given up: the node has been told if it needs to be.
    Over,
}

impl Bridge {
    async fn run(mut self, call: IncomingCall) {
        let invited = match self.invite(&call).await {
            Ok(invited) => invited,
            Err(reason) => {
                self.report(LegEvent::Failed(reason)).await;
                return;
            }
        };
        let Invited {
            dialog,
            invite,
            mut states,
            socket,
            local,
        } = invited;
        // The caller's media is answered while the trunk works on the INVITE, and the SDP
        // answer goes back at once: ICE and DTLS run while the callee rings.
        let mut leg = match WebRtcLeg::answer(&call.sdp_offer, &self.shared.webrtc).await {
            Ok((leg, sdp_answer)) => {
                self.report(LegEvent::SessionProgress {
                    sdp_answer: sdp_answer.clone(),
                })
                .await;
                (leg, sdp_answer)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot answer the caller's media; cancelling the INVITE");
                cancel(&dialog, invite).await;
                self.report(LegEvent::Failed(RejectReason::Unavailable))
                    .await;
                return;
            }
        };
        let (id, response) = match self.ring(&dialog, invite, &mut states, &mut leg.0).await {
            Ringing::Answered { id, response } => (id, response),
            Ringing::Over => {
                leg.0.close().await;
                return;
            }
        };
        match self.answer(leg, &response, socket).await {
            Ok(relay) => self.talk(&dialog, relay, &mut states, local).await,
            Err(reason) => {
                bye(&dialog).await;
                self.report(LegEvent::Failed(reason)).await;
            }
        }
        self.shared.endpoint.dialogs.remove_dialog(&id);
    }

    async fn report(&self, event: LegEvent) {
        // The node has stopped listening only when the call is over for it.
        let _ = self.events.send(event).await;
    }

    /// Sends the INVITE.
    async fn invite(&self, call: &IncomingCall) -> Result<Invited, RejectReason> {
        let trunk = &self.shared.trunk;
        let Some(codec) = sdp::caller_codec(&call.sdp_offer) else {
            tracing::info!("the caller's offer has no G.711: nothing to bridge");
            return Err(RejectReason::Unavailable);
        };
        let socket = UdpSocket::bind(SocketAddr::new(self.shared.media_ip, 0))
            .await
            .map_err(|error| {
                tracing::warn!(%error, ip = %self.shared.media_ip, "cannot bind an RTP socket");
                RejectReason::Unavailable
            })?;
        let local = LocalSession::new(socket.local_addr().map_err(|error| {
            tracing::warn!(%error, "the RTP socket has no address");
            RejectReason::Unavailable
        })?);
        let target = resolve(&trunk.host, trunk.port).await.map_err(|error| {
            tracing::warn!(%error, "cannot reach the trunk");
            RejectReason::Unavailable
        })?;
        let number = trunk.numbering.rewrite(&call.destination);
        let option = self
            .invite_option(call, &number, target, local.offer(codec))
            .map_err(|error| {
                tracing::warn!(%error, %number, "cannot build the INVITE");
                RejectReason::NoRoute
            })?;
        let dialogs = &self.shared.endpoint.dialogs;
        let (state_sender, states) = dialogs.new_dialog_state_channel();
        let (dialog, invite) = dialogs
            .do_invite_async(option, state_sender)
            .map_err(|error| {
                tracing::warn!(%error, "cannot send the INVITE");
                RejectReason::Unavailable
            })?;
        tracing::info!(
            destination = %call.destination,
            %number,
            sip_call_id = %dialog.id().call_id,
            rtp = %local.addr,
            "INVITE sent to the trunk"
        );
        Ok(Invited {
            dialog,
            invite,
            states,
            socket,
            local,
        })
    }

    fn invite_option(
        &self,
        call: &IncomingCall,
        number: &str,
        target: SocketAddr,
        offer: String,
    ) -> Result<InviteOption, rsipstack::sip::Error> {
        let trunk = &self.shared.trunk;
        let transport_param = match trunk.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        let uri = Uri::try_from;
        let callee = uri(format!(
            "sip:{number}@{}:{}{transport_param}",
            trunk.host, trunk.port
        ))?;
        let caller = uri(format!("sip:{}@{}", trunk.from_user, trunk.from_domain))?;
        let contact = uri(format!(
            "sip:{}@{}",
            trunk.from_user, self.shared.endpoint.advertised
        ))?;
        // The caller's identity is its provider key (hex), a valid SIP user part.
        let asserted = format!("<sip:{}@{}>", call.caller, trunk.from_domain);
        Ok(InviteOption {
            caller_display_name: Some(call.caller.to_string()),
            caller,
            callee,
            destination: Some(SipAddr {
                r#type: Some(match trunk.transport {
                    Transport::Udp => rsipstack::sip::Transport::Udp,
                    Transport::Tcp => rsipstack::sip::Transport::Tcp,
                }),
                addr: target.into(),
            }),
            content_type: Some("application/sdp".to_owned()),
            offer: Some(offer.into_bytes()),
            contact,
            credential: trunk.credentials.as_ref().map(|c| Credential {
                username: c.username.clone(),
                password: c.password.clone(),
                realm: c.realm.clone(),
                auth_username: None,
            }),
            headers: Some(vec![Header::PAssertedIdentity(PAssertedIdentity::new(
                asserted,
            ))]),
            ..InviteOption::default()
        })
    }

    /// Waits for the final response, reporting ringing; cancels on the node's hang-up or
    /// after the ring timeout. What the caller sends meanwhile is dropped: nothing reaches
    /// the trunk before the answer.
    async fn ring(
        &mut self,
        dialog: &InviteDialog,
        mut invite: JoinHandle<InviteAsyncResult>,
        states: &mut DialogStateReceiver,
        leg: &mut WebRtcLeg,
    ) -> Ringing {
        let give_up = tokio::time::sleep(self.shared.trunk.ring_timeout);
        tokio::pin!(give_up);
        let (mut rang, mut states_open, mut media_open) = (false, true, true);
        let result = loop {
            tokio::select! {
                result = &mut invite => break result,
                packet = leg.recv(), if media_open => media_open = packet.is_some(),
                state = states.recv(), if states_open => match state {
                    Some(DialogState::Early(_, response)) => {
                        let code = response.status_code.code();
                        if is_ringing(code) && !rang {
                            rang = true;
                            tracing::debug!(code, "the callee is being alerted");
                            self.report(LegEvent::Ringing).await;
                        }
                    }
                    Some(_) => {}
                    None => states_open = false,
                },
                cause = &mut self.hung_up => {
                    let cause = cause.unwrap_or(ByeCause::ConnectionLost);
                    tracing::info!(%cause, "cancelling the INVITE: the caller is gone");
                    cancel(dialog, invite).await;
                    return Ringing::Over;
                }
                () = &mut give_up => {
                    tracing::info!(after = ?self.shared.trunk.ring_timeout, "no answer: cancelling the INVITE");
                    cancel(dialog, invite).await;
                    self.report(LegEvent::Failed(RejectReason::Timeout)).await;
                    return Ringing::Over;
                }
            }
        };
        let failed = match result {
            Ok(Ok((id, Some(response)))) => {
                let code = response.status_code.code();
                match final_outcome(code) {
                    Ok(()) => return Ringing::Answered { id, response },
                    Err(reason) => {
                        tracing::info!(code, %reason, "the trunk refused the call");
                        reason
                    }
                }
            }
            Ok(Ok((_, None))) => {
                tracing::info!("the INVITE ended without a final response");
                RejectReason::Unavailable
            }
            Ok(Err(error)) => {
                tracing::info!(%error, "the INVITE failed (no response in time, or unreachable)");
                RejectReason::Unavailable
            }
            Err(error) => {
                tracing::warn!(%error, "the INVITE task failed");
                RejectReason::Unavailable
            }
        };
        self.report(LegEvent::Failed(failed)).await;
        Ringing::Over
    }

    /// Reads the trunk's answer, joins it to the caller's WebRTC leg (answered with
    /// `sdp_answer` already) and reports the answer.
    async fn answer(
        &self,
        (leg, sdp_answer): (WebRtcLeg, String),
        response: &Response,
        socket: UdpSocket,
    ) -> Result<RtpRelay, RejectReason> {
        let body = String::from_utf8_lossy(&response.body);
        let trunk_media = match sdp::parse_remote(&body) {
            Ok(media) => media,
            Err(error) => {
                tracing::warn!(%error, "the trunk's answer is unusable; hanging up");
                leg.close().await;
                return Err(RejectReason::Unavailable);
            }
        };
        let relay = RtpRelay::new(
            leg,
            socket,
            &trunk_media,
            random_ssrc(),
            self.shared.trunk.media_timeout,
        );
        let answered_by = answering_identity(response);
        tracing::info!(
            answered_by = answered_by.as_deref().unwrap_or("-"),
            trunk_rtp = %trunk_media.addr,
            codec = %trunk_media.audio.codec,
            transcoding = !relay.map().passes_through(),
            "answered"
        );
        self.report(LegEvent::Answered {
            sdp_answer,
            answered_by,
        })
        .await;
        Ok(relay)
    }

    /// Relays media until either side hangs up or the media dies.
    async fn talk(
        &mut self,
        dialog: &InviteDialog,
        mut relay: RtpRelay,
        states: &mut DialogStateReceiver,
        local: LocalSession,
    ) {
        let mut version = 1;
        loop {
            tokio::select! {
                event = relay.run() => match event {
                    RelayEvent::MediaStarted => self.report(LegEvent::MediaStarted).await,
                    RelayEvent::CallerGone => {
                        tracing::info!("the caller's media ended; hanging up the trunk");
                        bye(dialog).await;
                        self.report(LegEvent::HungUp).await;
                        break;
                    }
                    RelayEvent::TrunkSilent(after) => {
                        tracing::info!(?after, "no RTP from the trunk; hanging up");
                        bye(dialog).await;
                        self.report(LegEvent::Failed(RejectReason::Unavailable)).await;
                        break;
                    }
                    RelayEvent::SocketFailed(error) => {
                        tracing::warn!(%error, "the RTP socket failed; hanging up");
                        bye(dialog).await;
                        self.report(LegEvent::Failed(RejectReason::Unavailable)).await;
                        break;
                    }
                },
                state = states.recv() => match state {
                    Some(DialogState::Terminated(_, reason)) => {
                        tracing::info!(?reason, "the trunk ended the call");
                        self.report(LegEvent::HungUp).await;
                        break;
                    }
                    Some(DialogState::Updated(_, request, handle)) => {
                        version += 1;
                        reoffered(&mut relay, &local, version, &request, &handle).await;
                    }
                    Some(
                        DialogState::Options(_, _, handle) | DialogState::Info(_, _, handle),
                    ) => reply(&handle, StatusCode::OK, None).await,
                    Some(
                        DialogState::Notify(_, _, handle)
                        | DialogState::Message(_, _, handle)
                        | DialogState::Refer(_, _, handle)
                        | DialogState::Publish(_, _, handle),
                    ) => reply(&handle, StatusCode::NotImplemented, None).await,
                    Some(_) => {}
                    None => {
                        self.report(LegEvent::HungUp).await;
                        break;
                    }
                },
                cause = &mut self.hung_up => {
                    let cause = cause.unwrap_or(ByeCause::ConnectionLost);
                    tracing::info!(%cause, "hanging up the trunk");
                    bye(dialog).await;
                    break;
                }
            }
        }
        let stats = relay.close().await;
        tracing::info!(
            from_caller = stats.from_caller,
            to_trunk = stats.to_trunk,
            from_trunk = stats.from_trunk,
            to_caller = stats.to_caller,
            dropped = stats.dropped,
            transcoded = stats.transcoded,
            "call over"
        );
    }
}

/// Answers a new offer from the trunk (a re-INVITE or UPDATE) with the codec it lists
/// first; one without SDP (a session refresh) gets the current session back.
async fn reoffered(
    relay: &mut RtpRelay,
    local: &LocalSession,
    version: u64,
    request: &Request,
    handle: &TransactionHandle,
) {
    let current = *relay.map();
    let (audio, events) = if request.body.is_empty() {
        (current.trunk_audio(), current.trunk_events())
    } else {
        match sdp::parse_remote(&String::from_utf8_lossy(&request.body)) {
            Ok(remote) => {
                tracing::info!(trunk_rtp = %remote.addr, codec = %remote.audio.codec, "the trunk moved its media");
                relay.set_trunk(&remote);
                (remote.audio, remote.telephone_event)
            }
            Err(error) => {
                tracing::info!(%error, method = %request.method, "refusing a new offer");
                reply(handle, StatusCode::NotAcceptableHere, None).await;
                return;
            }
        }
    };
    let body = (request.method == Method::Invite || !request.body.is_empty())
        .then(|| local.answer(version, audio, events));
    reply(handle, StatusCode::OK, body).await;
}

async fn reply(handle: &TransactionHandle, status: StatusCode, sdp: Option<String>) {
    let (headers, body) = match sdp {
        Some(sdp) => (
            Some(vec![Header::ContentType("application/sdp".into())]),
            Some(sdp.into_bytes()),
        ),
        None => (None, None),
    };
    if handle.respond(status, headers, body).await.is_err() {
        tracing::debug!("the request was answered already");
    }
}

/// Cancels an unanswered INVITE and waits (bounded) for it to end; a 2xx that crosses the
/// CANCEL is ACKed and ended with a BYE by the stack.
async fn cancel(dialog: &InviteDialog, invite: JoinHandle<InviteAsyncResult>) {
    match tokio::time::timeout(SIGNALLING_DEADLINE, dialog.cancel()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "CANCEL failed"),
        Err(_) => tracing::debug!("no answer to the CANCEL in time"),
    }
    // Dropping the handle would leave the INVITE to the stack's own timers; waiting a
    // little lets the node see the leg released once it really is.
    let _ = tokio::time::timeout(SIGNALLING_DEADLINE, invite).await;
}

/// Sends a BYE on an answered dialog, waiting (bounded) for its answer.
async fn bye(dialog: &InviteDialog) {
    match tokio::time::timeout(SIGNALLING_DEADLINE, dialog.bye()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "BYE failed"),
        Err(_) => tracing::debug!("no answer to the BYE in time"),
    }
}

/// Who answered: the 2xx's `P-Asserted-Identity`, else its `To`.
fn answering_identity(response: &Response) -> Option<String> {
    response
        .p_asserted_identity_header()
        .and_then(|pai| identity_of(pai.value()))
        .or_else(|| {
            response
                .to_header()
                .ok()
                .and_then(|to| identity_of(to.value()))
        })
}

/// An unpredictable SSRC for the RTP sent to the trunk.
fn random_ssrc() -> u32 {
    let bits = RandomState::new()
        .hash_one(std::time::Instant::now())
        .to_le_bytes();
    u32::from_le_bytes([bits[0], bits[1], bits[2], bits[3]])
}
