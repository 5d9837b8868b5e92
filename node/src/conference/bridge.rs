//! The bridge side of conferences: reserve rooms, admit participants, settle receipts.
//!
//! Every inbound `/interlink/conference/1` stream opens with `Reserve` (an organiser) or
//! `Join` (a participant). A reservation is taken if it is signed by the peer that sent
//! it, names the bridge's current offer and its tariff, asks for no more participants
//! than a room takes, and a room is free; the organiser gets a join token signed by the
//! bridge. A participant is admitted if its token verifies (this bridge's signature, not
//! expired), the room is open, the participant is not in it already, the room has fewer
//! participants than reserved and the bridge has a participant slot free; otherwise it is
//! refused with the reason. Joins and leaves go to the organiser's stream as events. When
//! the organiser ends the room (or its stream breaks, or the room's time runs out, or the
//! node stops), every participant is told and dropped, and the bridge signs the room
//! receipt, sends it, waits for the countersignature and stores the receipt.
//!
//! The room's rules and record are [`room::Room`], a state machine without IO in the
//! protocol crate; this module drives it: the organiser's task feeds it the organiser's
//! frames, the end requests and its deadlines and sends what it returns, and each
//! participant's task reports its join, media and leave.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use interlink_gateway_plugin::conference::{ConferenceBridge, Room};
use interlink_protocol::conference::room::{self, Outcome};
use interlink_protocol::conference::{
    ConferenceFrame, JoinToken, RefusalReason, RoomId, SignedJoinToken, SignedReservation,
};
use interlink_protocol::{ProviderId, SecretKey};
use libp2p::{PeerId, Stream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::calls::gateway::AlreadyAccepting;
use crate::clock::{self, SessionClock};
use crate::conference::store::RoomRole;
use crate::conference::wire::{self, CONFERENCE_PROTOCOL, FrameWriter, Frames};
use crate::identity;
use crate::lock::LockExt;
use crate::network::Client;
use crate::publisher::Published;
use crate::store::{ReceiptStatus, Store};

/// How long a new stream may take to send its first frame.
const FIRST_FRAME_DEADLINE: Duration = Duration::from_secs(5);
/// How long a frame may take to go out.
const SEND_DEADLINE: Duration = Duration::from_secs(5);
/// Streams that have not yet sent their first frame, from all peers together; beyond it
/// new streams are dropped at once, so that idle streams cannot pile up.
const MAX_PENDING_STREAMS: usize = 256;

/// What the bridge's rooms share.
#[derive(Clone)]
pub struct BridgeContext {
    pub key: SecretKey,
    pub bridge: Arc<ConferenceBridge>,
    /// The offer the publisher last published.
    pub offer: watch::Receiver<Option<Published>>,
    pub store: Store,
}

impl std::fmt::Debug for BridgeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeContext").finish_non_exhaustive()
    }
}

/// One open room.
struct RoomEntry {
    /// Set when the organiser asks, on another stream, to end the room.
    end: watch::Sender<bool>,
    /// The room's rules and record; never held across an await.
    state: Mutex<room::Room>,
    /// The room's clock: its deadlines and the times its receipt signs run on the
    /// monotonic clock.
    time: SessionClock,
    /// Wakes the organiser's task when the room has frames for the organiser.
    wake: Notify,
    /// The room's media: the mixer and the participants' legs.
    mixer: Room,
    closed: watch::Sender<bool>,
}

impl RoomEntry {
    fn state(&self) -> MutexGuard<'_, room::Room> {
        self.state.locked()
    }
}

type Rooms = Arc<Mutex<BTreeMap<RoomId, Arc<RoomEntry>>>>;

fn rooms_of(rooms: &Rooms) -> MutexGuard<'_, BTreeMap<RoomId, Arc<RoomEntry>>> {
    rooms.locked()
}

/// The running conference service of a bridge node.
#[derive(Debug)]
pub struct ConferenceService {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ConferenceService {
    /// Starts accepting conference streams on the node's network.
    pub fn spawn(
        client: &Client,
        context: BridgeContext,
    ) -> Result<ConferenceService, AlreadyAccepting> {
        let incoming = client
            .streams()
            .accept(CONFERENCE_PROTOCOL)
            .map_err(|_| AlreadyAccepting)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(accept(incoming, context, shutdown_rx));
        Ok(ConferenceService { shutdown, task })
    }

    /// Stops at once, as a crash does.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Ends every room (with receipts) and stops.
    pub async fn shut_down(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

#[derive(Clone)]
struct Shared {
    context: BridgeContext,
    rooms: Rooms,
    slots: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

async fn accept(
    mut incoming: libp2p_stream::IncomingStreams,
    context: BridgeContext,
    shutdown: watch::Receiver<bool>,
) {
    use futures::StreamExt;
    let slots = Arc::new(Semaphore::new(
        context.bridge.advertised().max_concurrent_calls as usize,
    ));
    let shared = Shared {
        context,
        rooms: Rooms::default(),
        slots,
        shutdown: shutdown.clone(),
    };
    let mut stop = shutdown;
    let mut streams = JoinSet::new();
    let pending = Arc::new(Semaphore::new(MAX_PENDING_STREAMS));
    loop {
        tokio::select! {
            next = incoming.next() => match next {
                Some((peer, stream)) => match Arc::clone(&pending).try_acquire_owned() {
                    Ok(permit) => {
                        streams.spawn(serve(peer, stream, shared.clone(), permit));
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "too many conference streams waiting for their first frame; dropped one");
                    }
                },
                None => break,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    while streams.join_next().await.is_some() {}
}

async fn send(writer: &mut FrameWriter, frame: &ConferenceFrame) -> bool {
    matches!(
        tokio::time::timeout(SEND_DEADLINE, writer.send(frame)).await,
        Ok(Ok(()))
    )
}

async fn refuse(mut writer: FrameWriter, peer: &PeerId, reason: RefusalReason) {
    tracing::info!(%peer, %reason, "conference request refused");
    let _ = send(&mut writer, &ConferenceFrame::Refused(reason)).await;
    writer.close().await;
}

async fn serve(peer: PeerId, stream: Stream, shared: Shared, pending: OwnedSemaphorePermit) {
    let (writer, mut frames) = wire::split(stream);
    let first = tokio::time::timeout(FIRST_FRAME_DEADLINE, frames.recv()).await;
    drop(pending);
    match first {
        Ok(Some(Ok(ConferenceFrame::Reserve(bytes)))) => {
            serve_organiser(peer, &bytes, writer, frames, shared).await;
        }
        Ok(Some(Ok(ConferenceFrame::Join { token, sdp_offer }))) => {
            serve_participant(peer, &token, &sdp_offer, writer, frames, shared).await;
        }
        Ok(Some(Ok(ConferenceFrame::EndRoom(room_id)))) => {
            end_room(peer, room_id, writer, &shared).await;
        }
        Ok(Some(Ok(other))) => {
            tracing::info!(%peer, frame = other.name(), "a conference stream must open with Reserve or Join");
            let mut writer = writer;
            writer.close().await;
        }
        _ => {
            let mut writer = writer;
            writer.close().await;
        }
    }
}

/// Checks a reservation against the bridge's current offer and opens the room.
fn open_room(
    peer: &PeerId,
    signed: &SignedReservation,
    shared: &Shared,
) -> Result<(Arc<RoomEntry>, SignedJoinToken), RefusalReason> {
    let reservation = signed.reservation();
    if identity::provider_id(peer) != Some(reservation.organiser) {
        return Err(RefusalReason::Unauthorised);
    }
    let offer = shared
        .context
        .offer
        .borrow()
        .as_ref()
        .map(|p| p.offer.clone());
    let terms = room::check_reservation(reservation, offer.as_ref(), clock::unix_now())?;
    let token = SignedJoinToken::sign(
        JoinToken {
            room_id: reservation.room_id,
            bridge: shared.context.key.provider_id(),
            organiser: reservation.organiser,
            max_participants: reservation.max_participants,
            expires_at: reservation.expires_at(),
        },
        &shared.context.key,
    )
    .map_err(|_| RefusalReason::Unavailable)?;
    let mut rooms = rooms_of(&shared.rooms);
    if rooms.contains_key(&reservation.room_id) {
        return Err(RefusalReason::RoomIdTaken);
    }
    if rooms.len() >= terms.rooms as usize {
        return Err(RefusalReason::OverCapacity);
    }
    let time = SessionClock::start();
    let entry = Arc::new(RoomEntry {
        end: watch::channel(false).0,
        state: Mutex::new(room::Room::open(
            signed.clone(),
            shared.context.key.clone(),
            time.now(),
        )),
        time,
        wake: Notify::new(),
        mixer: shared.context.bridge.open_room(),
        closed: watch::channel(false).0,
    });
    rooms.insert(reservation.room_id, Arc::clone(&entry));
    Ok((entry, token))
}

async fn serve_organiser(
    peer: PeerId,
    bytes: &[u8],
    mut writer: FrameWriter,
    mut frames: Frames,
    shared: Shared,
) {
    let signed = match SignedReservation::decode(bytes, clock::now()) {
        Ok(signed) => signed,
        Err(e) => {
            tracing::info!(%peer, error = %e, "unreadable reservation");
            return refuse(writer, &peer, RefusalReason::Unauthorised).await;
        }
    };
    let (entry, token) = match open_room(&peer, &signed, &shared) {
        Ok(opened) => opened,
        Err(reason) => return refuse(writer, &peer, reason).await,
    };
    let reservation = signed.reservation();
    let room_id = reservation.room_id;
    tracing::info!(%peer, room = %room_id, max = reservation.max_participants, "room reserved");
    let mut writable = send(
        &mut writer,
        &ConferenceFrame::Reserved {
            token: token.as_bytes().to_vec(),
        },
    )
    .await;
    if !writable {
        entry.state().organiser_lost(entry.time.now());
    }
    let mut shutdown = shared.shutdown.clone();
    let mut asked_to_end = entry.end.subscribe();
    let outcome = 'room: loop {
        let events: Vec<room::Event> = std::iter::from_fn(|| entry.state().poll_event()).collect();
        for event in events {
            match event {
                room::Event::Closed => {
                    // Nobody joins any more; everyone still in is told and dropped.
                    entry.closed.send_replace(true);
                    rooms_of(&shared.rooms).remove(&room_id);
                    let stats = entry.mixer.close().await;
                    tracing::info!(room = %room_id, late = stats.total().late, "room ended");
                }
                room::Event::Unsigned(e) => {
                    tracing::error!(room = %room_id, error = %e, "cannot sign the room receipt");
                    writer.close().await;
                    return;
                }
                room::Event::Done(outcome) => break 'room outcome,
            }
        }
        let out: Vec<ConferenceFrame> =
            std::iter::from_fn(|| entry.state().poll_transmit()).collect();
        for frame in out {
            if writable {
                writable = send(&mut writer, &frame).await;
                if !writable {
                    entry.state().organiser_lost(entry.time.now());
                }
            }
        }
        let (open, deadline) = {
            let machine = entry.state();
            (
                machine.state() == room::State::Open,
                machine.poll_timeout().map(|at| entry.time.instant_of(at)),
            )
        };
        if !entry.state().is_done() && writable {
            tokio::select! {
                _ = asked_to_end.changed(), if open => entry.state().end(entry.time.now()),
                () = entry.wake.notified() => {}
                frame = frames.recv() => match frame {
                    Some(Ok(frame)) => {
                        if open && frame != ConferenceFrame::End {
                            tracing::debug!(%peer, frame = frame.name(), "ignored from an organiser");
                        }
                        entry.state().handle_frame(frame, entry.time.now());
                    }
                    Some(Err(_)) | None => entry.state().organiser_lost(entry.time.now()),
                },
                () = crate::calls::sleep_until(deadline) => {
                    entry.state().handle_timeout(entry.time.now());
                }
                _ = shutdown.changed(), if open => entry.state().end(entry.time.now()),
            }
        }
    };
    writer.close().await;
    let (status, receipt, bytes, dispute) = match outcome {
        Outcome::Settled(settled) => (
            ReceiptStatus::Settled,
            settled.receipt().clone(),
            settled.as_bytes().to_vec(),
            None,
        ),
        Outcome::Disputed { receipt, dispute } => {
            tracing::warn!(room = %room_id, %dispute, "the organiser refused the room receipt");
            let bytes = receipt.as_bytes().to_vec();
            (
                ReceiptStatus::Disputed,
                receipt.receipt().clone(),
                bytes,
                Some(dispute.to_string()),
            )
        }
        Outcome::Unacknowledged(receipt) => {
            tracing::warn!(room = %room_id, "no valid countersignature for the room receipt");
            let bytes = receipt.as_bytes().to_vec();
            (
                ReceiptStatus::Unacknowledged,
                receipt.receipt().clone(),
                bytes,
                None,
            )
        }
    };
    if let Err(e) = shared
        .context
        .store
        .save_room_receipt(
            RoomRole::Bridge,
            status,
            &receipt,
            &bytes,
            dispute,
            clock::now(),
        )
        .await
    {
        tracing::error!(room = %room_id, error = %e, "cannot store the room receipt");
    }
}

/// The organiser's request, from another stream, to end its room.
async fn end_room(peer: PeerId, room_id: RoomId, mut writer: FrameWriter, shared: &Shared) {
    let entry = rooms_of(&shared.rooms).get(&room_id).cloned();
    let Some(entry) = entry else {
        return refuse(writer, &peer, RefusalReason::RoomClosed).await;
    };
    let organiser = entry.state().organiser();
    if identity::provider_id(&peer) != Some(organiser) {
        return refuse(writer, &peer, RefusalReason::Unauthorised).await;
    }
    entry.end.send_replace(true);
    tracing::info!(%peer, room = %room_id, "the organiser asked to end the room");
    let _ = send(&mut writer, &ConferenceFrame::Ending).await;
    writer.close().await;
}

async fn serve_participant(
    peer: PeerId,
    token: &[u8],
    sdp_offer: &str,
    mut writer: FrameWriter,
    mut frames: Frames,
    shared: Shared,
) {
    let Some(participant) = identity::provider_id(&peer) else {
        return refuse(writer, &peer, RefusalReason::Unauthorised).await;
    };
    let bridge: ProviderId = shared.context.key.provider_id();
    let token = match SignedJoinToken::decode(token, bridge, clock::now()) {
        Ok(token) => token,
        Err(e) => {
            tracing::info!(%peer, error = %e, "invalid join token");
            return refuse(writer, &peer, RefusalReason::InvalidToken).await;
        }
    };
    let room_id = token.token().room_id;
    let Some(entry) = rooms_of(&shared.rooms).get(&room_id).cloned() else {
        return refuse(writer, &peer, RefusalReason::RoomClosed).await;
    };
    let Ok(_slot) = Arc::clone(&shared.slots).try_acquire_owned() else {
        return refuse(writer, &peer, RefusalReason::OverCapacity).await;
    };
    let admitted = entry.state().join(participant, entry.time.now());
    if let Err(reason) = admitted {
        return refuse(writer, &peer, reason).await;
    }
    let mut closed = entry.closed.subscribe();
    let (sdp_answer, mut leg) = match entry.mixer.join(sdp_offer).await {
        Ok(joined) => joined,
        Err(e) => {
            tracing::info!(%peer, error = %e, "participant's media refused");
            entry.state().media_failed(participant);
            return refuse(writer, &peer, RefusalReason::MediaFailed).await;
        }
    };
    let mut joined = send(&mut writer, &ConferenceFrame::Joined { sdp_answer }).await;
    let present = entry.state().joined(participant, joined, entry.time.now());
    if joined {
        entry.wake.notify_one();
        tracing::info!(%peer, room = %room_id, present, "participant joined");
    }
    let mut room_closed = *closed.borrow();
    let mut shutdown = shared.shutdown.clone();
    while joined && !room_closed {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(ConferenceFrame::Leave)) | Some(Err(_)) | None => joined = false,
                Some(Ok(_)) => {}
            },
            () = leg.media_ended() => joined = false,
            _ = closed.wait_for(|c| *c) => room_closed = true,
            _ = shutdown.changed() => joined = false,
        }
    }
    // Closing the room stops its mixer, which can end a participant's media before the
    // closed signal is seen here: the participant is told the room closed all the same.
    if room_closed || *closed.borrow() {
        let _ = send(&mut writer, &ConferenceFrame::Closed).await;
    }
    leg.leave().await;
    writer.close().await;
    let left = entry.state().leave(participant, entry.time.now());
    if let Some(present) = left {
        entry.wake.notify_one();
        tracing::info!(%peer, room = %room_id, present, "participant left");
    }
}
