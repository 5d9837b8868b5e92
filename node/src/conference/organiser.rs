//! The organiser's side: reserve a room on a chosen bridge, follow its joins and leaves,
//! end it, check and countersign its receipt.

use std::collections::BTreeMap;
use std::time::Duration;

use interlink_protocol::call::OfferRef;
use interlink_protocol::conference::receipt::Observed;
use interlink_protocol::conference::{
    ConferenceError, ConferenceFrame, RefusalReason, Reservation, RoomEvent, RoomId,
    RoomReceiptDispute, SettledRoomReceipt, SignedJoinToken, SignedReservation, SignedRoomReceipt,
};
use interlink_protocol::{ProviderId, SignedOffer, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::calls::caller::CallerContext;
use crate::clock;
use crate::conference::store::RoomRole;
use crate::conference::wire::{self, CONFERENCE_PROTOCOL, FrameWriter, Frames};
use crate::framing::WireError;
use crate::identity;
use crate::store::{ReceiptStatus, StoreError};

/// How long the bridge may take to answer a reservation (dialling included).
const RESERVE_DEADLINE: Duration = Duration::from_secs(10);
/// How long the bridge may take to send the receipt after `End`.
const RECEIPT_DEADLINE: Duration = Duration::from_secs(10);
/// Events queued for the organiser's code; the room's own record never drops one.
const EVENTS: usize = 256;

/// Why a room could not be reserved or settled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrganiserError {
    #[error("the offer is not a conference offer")]
    NotConference,
    #[error("the offer's provider has no libp2p identity")]
    NoPeer,
    #[error("cannot reach the bridge: {0}")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the bridge refused: {0}")]
    Refused(RefusalReason),
    #[error("the bridge did not answer in time")]
    Timeout,
    #[error("the bridge broke the protocol: {0}")]
    Protocol(String),
    /// A frame from the bridge that could not be read, or one that could not be sent.
    #[error("the bridge broke the protocol: {0}")]
    Wire(#[from] WireError),
    #[error("cannot store the room receipt: {0}")]
    Store(#[from] StoreError),
    #[error("the room's task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Signing(#[from] ConferenceError),
    #[error("the room receipt was refused: {0}")]
    Disputed(RoomReceiptDispute),
    #[error("the room ended without a receipt")]
    NoReceipt,
}

/// What to reserve.
#[derive(Clone, Copy, Debug)]
pub struct RoomRequest {
    pub max_participants: u32,
    /// How long the room may stay open.
    pub lifetime: Duration,
}

/// A reserved room, followed until it ends.
#[derive(Debug)]
pub struct OrganisedRoom {
    room_id: RoomId,
    token: SignedJoinToken,
    events: mpsc::Receiver<RoomEvent>,
    end: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<SettledRoomReceipt, OrganiserError>>,
}

impl OrganisedRoom {
    /// The room's id.
    pub fn room_id(&self) -> RoomId {
        self.room_id
    }

    /// The join token to hand to participants.
    pub fn token(&self) -> &SignedJoinToken {
        &self.token
    }

    /// The next join or leave; `None` once the room has ended.
    pub async fn next_event(&mut self) -> Option<RoomEvent> {
        self.events.recv().await
    }

    /// Ends the room; returns its receipt, checked and countersigned (and stored).
    pub async fn end(mut self) -> Result<SettledRoomReceipt, OrganiserError> {
        if let Some(end) = self.end.take() {
            let _ = end.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) => Err(OrganiserError::Task(e)),
        }
    }
}

/// Reserves a room on the bridge that published `offer`.
pub async fn reserve(
    context: &CallerContext,
    offer: &SignedOffer,
    request: RoomRequest,
) -> Result<OrganisedRoom, OrganiserError> {
    let terms = offer
        .offer()
        .conference
        .ok_or(OrganiserError::NotConference)?;
    let peer = identity::peer_id(&offer.provider()).ok_or(OrganiserError::NoPeer)?;
    let reservation = Reservation {
        room_id: RoomId::from_bytes(rand::random()),
        offer: OfferRef {
            provider: offer.provider(),
            seq: offer.seq(),
        },
        organiser: context.key.provider_id(),
        tariff: terms.tariff,
        max_participants: request.max_participants,
        lifetime_secs: request.lifetime.as_secs().max(1),
        sent_at: clock::now(),
    };
    let signed = SignedReservation::sign(reservation.clone(), &context.key)?;
    let exchange = async {
        let stream = context
            .client
            .open_stream(peer, offer.offer().addresses.clone(), CONFERENCE_PROTOCOL)
            .await
            .map_err(|e| OrganiserError::Unreachable(e.into()))?;
        let (mut writer, mut frames) = wire::split(stream);
        writer
            .send(&ConferenceFrame::Reserve(signed.as_bytes().to_vec()))
            .await
            .map_err(|e| OrganiserError::Unreachable(e.into()))?;
        match frames.recv().await {
            Some(Ok(ConferenceFrame::Reserved { token })) => Ok((writer, frames, token)),
            Some(Ok(ConferenceFrame::Refused(reason))) => Err(OrganiserError::Refused(reason)),
            Some(Ok(other)) => Err(OrganiserError::Protocol(format!(
                "{} in answer to Reserve",
                other.name()
            ))),
            Some(Err(e)) => Err(OrganiserError::Wire(e)),
            None => Err(OrganiserError::Protocol("the stream closed".into())),
        }
    };
    let (writer, frames, token) = tokio::time::timeout(RESERVE_DEADLINE, exchange)
        .await
        .map_err(|_| OrganiserError::Timeout)??;
    let token = SignedJoinToken::decode(&token, offer.provider(), clock::now())?;
    if token.token().room_id != reservation.room_id
        || token.token().max_participants != reservation.max_participants
        || token.token().organiser != reservation.organiser
    {
        return Err(OrganiserError::Protocol(
            "the join token is for another room".into(),
        ));
    }
    let (events_tx, events) = mpsc::channel(EVENTS);
    let (end, end_rx) = oneshot::channel();
    let task = tokio::spawn(follow(
        context.clone(),
        reservation.clone(),
        writer,
        frames,
        events_tx,
        end_rx,
    ));
    Ok(OrganisedRoom {
        room_id: reservation.room_id,
        token,
        events,
        end: Some(end),
        task,
    })
}

/// Asks `bridge` (dialled at `addresses`) to end room `room_id`, from another process
/// than the one holding the room: the bridge checks that this node is the room's
/// organiser, and sends the receipt on the stream that reserved it.
pub async fn end_room(
    context: &CallerContext,
    bridge: libp2p::PeerId,
    addresses: Vec<libp2p::Multiaddr>,
    room_id: RoomId,
) -> Result<(), OrganiserError> {
    let exchange = async {
        let stream = context
            .client
            .open_stream(bridge, addresses, CONFERENCE_PROTOCOL)
            .await
            .map_err(|e| OrganiserError::Unreachable(e.into()))?;
        let (mut writer, mut frames) = wire::split(stream);
        writer
            .send(&ConferenceFrame::EndRoom(room_id))
            .await
            .map_err(|e| OrganiserError::Unreachable(e.into()))?;
        let answer = frames.recv().await;
        writer.close().await;
        match answer {
            Some(Ok(ConferenceFrame::Ending)) => Ok(()),
            Some(Ok(ConferenceFrame::Refused(reason))) => Err(OrganiserError::Refused(reason)),
            Some(Ok(other)) => Err(OrganiserError::Protocol(format!(
                "{} in answer to EndRoom",
                other.name()
            ))),
            Some(Err(e)) => Err(OrganiserError::Wire(e)),
            None => Err(OrganiserError::Protocol("the stream closed".into())),
        }
    };
    tokio::time::timeout(RESERVE_DEADLINE, exchange)
        .await
        .map_err(|_| OrganiserError::Timeout)?
}

/// The organiser's record of who was in the room, by its own clock.
#[derive(Debug, Default)]
struct Seen {
    present: BTreeMap<ProviderId, Timestamp>,
    stays: Vec<Observed>,
}

impl Seen {
    fn note(&mut self, event: &RoomEvent) {
        match *event {
            RoomEvent::Joined { participant, .. } => {
                self.present.insert(participant, clock::now());
            }
            RoomEvent::Left { participant, .. } => {
                if let Some(joined) = self.present.remove(&participant) {
                    self.stays.push((participant, joined, clock::now()));
                }
            }
        }
    }
}

async fn follow(
    context: CallerContext,
    reservation: Reservation,
    mut writer: FrameWriter,
    mut frames: Frames,
    events: mpsc::Sender<RoomEvent>,
    mut end: oneshot::Receiver<()>,
) -> Result<SettledRoomReceipt, OrganiserError> {
    let mut seen = Seen::default();
    let mut ending = false;
    let mut deadline = None;
    let receipt = loop {
        let wait = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(ConferenceFrame::Event(event))) => {
                    seen.note(&event);
                    let _ = events.try_send(event);
                }
                Some(Ok(ConferenceFrame::Ended { receipt })) => break receipt,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(OrganiserError::Wire(e)),
                None => return Err(OrganiserError::NoReceipt),
            },
            _ = &mut end, if !ending => {
                ending = true;
                deadline = Some(tokio::time::Instant::now() + RECEIPT_DEADLINE);
                writer
                    .send(&ConferenceFrame::End)
                    .await?;
            }
            () = wait => return Err(OrganiserError::Timeout),
        }
    };
    // Whoever was still in left when the room ended.
    let ended_at = clock::now();
    for (participant, joined) in std::mem::take(&mut seen.present) {
        seen.stays.push((participant, joined, ended_at));
    }
    let signed = SignedRoomReceipt::decode(&receipt)?;
    if signed.receipt().offer != reservation.offer {
        return Err(OrganiserError::Protocol(
            "a receipt from another bridge".into(),
        ));
    }
    let store = &context.store;
    if let Err(dispute) = signed.receipt().check(&reservation, &seen.stays) {
        let _ = writer
            .send(&ConferenceFrame::ReceiptRefused(dispute.clone()))
            .await;
        writer.close().await;
        let saved = store
            .save_room_receipt(
                RoomRole::Organiser,
                ReceiptStatus::Disputed,
                signed.receipt(),
                signed.as_bytes(),
                Some(dispute.to_string()),
                clock::now(),
            )
            .await;
        context
            .client
            .metrics()
            .store_result_or_default("save_room_receipt", saved);
        return Err(OrganiserError::Disputed(dispute));
    }
    let settled = signed.countersign(&context.key)?;
    store
        .save_room_receipt(
            RoomRole::Organiser,
            ReceiptStatus::Settled,
            settled.receipt(),
            settled.as_bytes(),
            None,
            clock::now(),
        )
        .await?;
    let _ = writer
        .send(&ConferenceFrame::Countersigned(settled.as_bytes().to_vec()))
        .await;
    writer.close().await;
    Ok(settled)
}
