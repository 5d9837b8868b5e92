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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use interlink_gateway_plugin::conference::{ConferenceBridge, Room};
use interlink_protocol::conference::{
    ConferenceFrame, JoinToken, RefusalReason, RoomEvent, RoomId, RoomReceipt, SettledRoomReceipt,
    SignedJoinToken, SignedReservation, SignedRoomReceipt,
};
use interlink_protocol::offer::OfferStatus;
use interlink_protocol::{ProviderId, SecretKey};
use libp2p::{PeerId, Stream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::calls::gateway::AlreadyAccepting;
use crate::clock;
use crate::conference::book::RoomBook;
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
/// How long the organiser may take to countersign the receipt.
const COUNTERSIGN_DEADLINE: Duration = Duration::from_secs(5);
/// Join and leave events queued to an organiser's stream.
const ROOM_EVENTS: usize = 256;
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
    organiser: ProviderId,
    /// Set when the organiser asks, on another stream, to end the room.
    end: watch::Sender<bool>,
    book: Mutex<RoomBook>,
    room: Room,
    events: mpsc::Sender<RoomEvent>,
    closed: watch::Sender<bool>,
}

impl RoomEntry {
    fn book(&self) -> MutexGuard<'_, RoomBook> {
        self.book.locked()
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
) -> Result<(Arc<RoomEntry>, SignedJoinToken, mpsc::Receiver<RoomEvent>), RefusalReason> {
    let reservation = signed.reservation();
    if identity::provider_id(peer) != Some(reservation.organiser) {
        return Err(RefusalReason::Unauthorised);
    }
    let now = clock::unix_now();
    let offer = shared
        .context
        .offer
        .borrow()
        .as_ref()
        .map(|p| p.offer.clone())
        .filter(|o| !o.is_expired(now) && o.offer().status == OfferStatus::Available);
    let Some((offer, terms)) = offer.and_then(|o| o.offer().conference.map(|t| (o, t))) else {
        return Err(RefusalReason::Unavailable);
    };
    if reservation.offer.provider != offer.provider() {
        return Err(RefusalReason::Unavailable);
    }
    if reservation.offer.seq > offer.seq() || reservation.tariff != terms.tariff {
        return Err(RefusalReason::PriceChanged {
            current: Some(terms.tariff),
        });
    }
    if reservation.max_participants > terms.participants_per_room {
        return Err(RefusalReason::TooLarge {
            max: terms.participants_per_room,
        });
    }
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
    let (events, events_rx) = mpsc::channel(ROOM_EVENTS);
    let entry = Arc::new(RoomEntry {
        organiser: reservation.organiser,
        end: watch::channel(false).0,
        book: Mutex::new(RoomBook::new(reservation.max_participants, clock::now())),
        room: shared.context.bridge.open_room(),
        events,
        closed: watch::channel(false).0,
    });
    rooms.insert(reservation.room_id, Arc::clone(&entry));
    Ok((entry, token, events_rx))
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
    let (entry, token, mut events) = match open_room(&peer, &signed, &shared) {
        Ok(opened) => opened,
        Err(reason) => return refuse(writer, &peer, reason).await,
    };
    let reservation = signed.reservation();
    let room_id = reservation.room_id;
    tracing::info!(%peer, room = %room_id, max = reservation.max_participants, "room reserved");
    let expiry = crate::calls::instant_of(reservation.expires_at());
    let mut writable = send(
        &mut writer,
        &ConferenceFrame::Reserved {
            token: token.as_bytes().to_vec(),
        },
    )
    .await;
    let mut shutdown = shared.shutdown.clone();
    let mut asked_to_end = entry.end.subscribe();
    while writable {
        tokio::select! {
            _ = asked_to_end.changed() => break,
            Some(event) = events.recv() => {
                writable = send(&mut writer, &ConferenceFrame::Event(event)).await;
            }
            frame = frames.recv() => match frame {
                Some(Ok(ConferenceFrame::End)) => break,
                Some(Ok(other)) => {
                    tracing::debug!(%peer, frame = other.name(), "ignored from an organiser");
                }
                Some(Err(_)) | None => {
                    writable = false;
                }
            },
            () = tokio::time::sleep_until(expiry) => break,
            _ = shutdown.changed() => break,
        }
    }

    // Close the room: nobody joins any more, everyone still in is told and dropped.
    let closed = entry.book().close(clock::now());
    let (opened_at, closed_at, stays) = closed;
    entry.closed.send_replace(true);
    rooms_of(&shared.rooms).remove(&room_id);
    let stats = entry.room.close().await;
    tracing::info!(room = %room_id, stays = stays.len(), late = stats.total().late, "room ended");

    let receipt = RoomReceipt::for_room(reservation, opened_at, closed_at, &stays);
    let signed_receipt = match SignedRoomReceipt::sign(receipt, &shared.context.key) {
        Ok(signed) => signed,
        Err(e) => {
            tracing::error!(room = %room_id, error = %e, "cannot sign the room receipt");
            writer.close().await;
            return;
        }
    };
    let mut outcome = (
        ReceiptStatus::Unacknowledged,
        signed_receipt.as_bytes().to_vec(),
        None,
    );
    if writable
        && send(
            &mut writer,
            &ConferenceFrame::Ended {
                receipt: signed_receipt.as_bytes().to_vec(),
            },
        )
        .await
    {
        let answer = tokio::time::timeout(COUNTERSIGN_DEADLINE, async {
            loop {
                match frames.recv().await {
                    Some(Ok(ConferenceFrame::Countersigned(bytes))) => return Some(Ok(bytes)),
                    Some(Ok(ConferenceFrame::ReceiptRefused(dispute))) => {
                        return Some(Err(dispute));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await;
        match answer {
            Ok(Some(Ok(bytes))) => match SettledRoomReceipt::decode(&bytes) {
                Ok(settled) if settled.receipt() == signed_receipt.receipt() => {
                    outcome = (ReceiptStatus::Settled, bytes, None);
                }
                _ => {
                    tracing::warn!(room = %room_id, "the organiser's countersignature does not verify")
                }
            },
            Ok(Some(Err(dispute))) => {
                tracing::warn!(room = %room_id, %dispute, "the organiser refused the room receipt");
                outcome.0 = ReceiptStatus::Disputed;
                outcome.2 = Some(dispute.to_string());
            }
            _ => tracing::warn!(room = %room_id, "no countersignature for the room receipt"),
        }
    }
    writer.close().await;
    let (status, bytes, dispute) = outcome;
    if let Err(e) = shared
        .context
        .store
        .save_room_receipt(
            RoomRole::Bridge,
            status,
            signed_receipt.receipt(),
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
    if identity::provider_id(&peer) != Some(entry.organiser) {
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
    let admitted = entry.book().admit(participant, clock::now());
    if let Err(reason) = admitted {
        return refuse(writer, &peer, reason).await;
    }
    let mut closed = entry.closed.subscribe();
    let (sdp_answer, mut leg) = match entry.room.join(sdp_offer).await {
        Ok(joined) => joined,
        Err(e) => {
            tracing::info!(%peer, error = %e, "participant's media refused");
            entry.book().cancel(participant);
            return refuse(writer, &peer, RefusalReason::MediaFailed).await;
        }
    };
    let mut joined = send(&mut writer, &ConferenceFrame::Joined { sdp_answer }).await;
    let at = clock::now();
    let present = {
        let mut book = entry.book();
        book.started(participant, at);
        book.present_count()
    };
    if joined {
        tracing::info!(%peer, room = %room_id, present, "participant joined");
        let _ = entry
            .events
            .send(RoomEvent::Joined {
                participant,
                at,
                present,
            })
            .await;
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
    let at = clock::now();
    let left = { entry.book().leave(participant, at) };
    if let Some(present) = left {
        tracing::info!(%peer, room = %room_id, present, "participant left");
        let _ = entry
            .events
            .send(RoomEvent::Left {
                participant,
                at,
                present,
            })
            .await;
    }
}
