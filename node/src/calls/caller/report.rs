//! What an answered call leaves: the receipt stored, the history, and the report.

use std::time::{Duration, Instant};

use interlink_protocol::call::ReceiptOutcome;
use interlink_protocol::offer::Tariff;
use serde::Serialize;

use crate::calls::media::MediaReport;
use crate::clock;
use crate::identity;
use crate::store::{ReceiptStatus, Role};

use super::attempt::Answered;
use super::*;

/// What the caller keeps of a call's receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Signed by the gateway and countersigned by the caller.
    Settled,
    /// The caller refused it.
    Disputed,
    /// None came.
    Missing,
}

crate::store::stored_as_text!(Kept {
    Settled => "settled",
    Disputed => "disputed",
    Missing => "missing",
});

/// The receipt of the call, as the caller stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceiptSummary {
    pub status: Kept,
    pub billed_seconds: Option<u64>,
    pub amount: Option<String>,
    pub amount_minor: Option<u64>,
    pub currency: Option<String>,
    pub dispute: Option<String>,
    /// Set when the call is not charged because media never flowed both ways: how it
    /// ended.
    pub not_charged: Option<String>,
}

/// Everything about a call that was answered.
#[derive(Clone, Debug, Serialize)]
pub struct CallReport {
    pub call_id: String,
    pub destination: String,
    pub gateway: String,
    pub gateway_peer_id: String,
    pub prefix: String,
    pub currency: String,
    pub price_per_minute: String,
    pub setup_fee: String,
    /// Gateways tried before this one, with why they failed.
    pub failovers: Vec<Attempt>,
    pub command_to_answer_ms: f64,
    pub invite_to_answer_ms: f64,
    pub command_to_first_media_ms: Option<f64>,
    /// How long each phase of the setup took, for the gateway that answered.
    pub phases: SetupPhases,
    /// Who answered, as the far network identified them, if the gateway said.
    pub answered_by: Option<String>,
    pub media: MediaReport,
    /// Who ended the call and why.
    pub ended_by: Role,
    pub cause: String,
    pub receipt: ReceiptSummary,
}

/// The phases of a call's setup, in milliseconds: divided by the round-trip time to the
/// gateway, each says how many round trips it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SetupPhases {
    /// Finding and ranking the offers.
    pub lookup_ms: f64,
    /// Opening the call stream to the gateway that answered (dialling it, or a stream on
    /// a connection already open).
    pub stream_ms: f64,
    /// From the invite to `Trying`, to the early SDP answer, to `Ringing` and to the answer.
    pub invite_to_trying_ms: Option<f64>,
    pub invite_to_early_answer_ms: Option<f64>,
    pub invite_to_ringing_ms: Option<f64>,
    pub invite_to_answer_ms: f64,
    /// From the answer to the first media packet from the gateway: what is left of ICE
    /// and DTLS once the callee answers, plus one round trip for the echo.
    pub answer_to_first_media_ms: Option<f64>,
    /// The connection's handshake, wherever it fell: from applying the gateway's SDP
    /// answer (early or at the answer) to ICE connected, and from ICE to DTLS connected.
    pub sdp_answer_to_ice_ms: Option<f64>,
    pub ice_to_dtls_ms: Option<f64>,
}

/// Stores what the answered call left and writes its report.
#[allow(clippy::too_many_arguments)]
pub(super) async fn finish(
    context: &CallerContext,
    options: &CallOptions,
    candidate: &Planned,
    tariff: Tariff,
    answered: Box<Answered>,
    failovers: Vec<Attempt>,
    started: Instant,
    lookup: Duration,
) -> Result<CallReport, CallError> {
    let Answered {
        call_id,
        end,
        media,
        invite_to_answer,
        invited_at,
        answered_at,
        answered_by,
        first_media_at,
        timeline,
    } = *answered;
    let metrics = context.client.metrics();
    metrics.call_setup(Role::Caller, "invite_to_answer", invite_to_answer);
    metrics.call_setup(Role::Caller, "command_to_answer", answered_at - started);
    if let Some(first) = first_media_at {
        metrics.call_setup(Role::Caller, "command_to_first_media", first - started);
    }
    let now = clock::now();
    let receipt = match &end.receipt {
        ReceiptOutcome::Settled(settled) => {
            context
                .store
                .save_receipt(
                    Role::Caller,
                    ReceiptStatus::Settled,
                    settled.receipt(),
                    settled.as_bytes(),
                    None,
                    now,
                )
                .await?;
            metrics.receipt_written(Role::Caller, ReceiptStatus::Settled);
            let r = settled.receipt();
            if r.without_media.is_some() {
                metrics.call_not_charged(Role::Caller);
            }
            ReceiptSummary {
                status: Kept::Settled,
                billed_seconds: Some(r.billed_seconds),
                amount: Some(r.amount.to_string()),
                amount_minor: Some(r.amount.minor_units),
                currency: Some(r.amount.currency.to_string()),
                dispute: None,
                not_charged: r.without_media.map(|cause| cause.to_string()),
            }
        }
        ReceiptOutcome::Refused { receipt, dispute } => {
            if let Some(signed) = receipt {
                context
                    .store
                    .save_receipt(
                        Role::Caller,
                        ReceiptStatus::Disputed,
                        signed.receipt(),
                        signed.as_bytes(),
                        Some(dispute.to_string()),
                        now,
                    )
                    .await?;
                metrics.receipt_written(Role::Caller, ReceiptStatus::Disputed);
            }
            ReceiptSummary {
                status: Kept::Disputed,
                billed_seconds: receipt.as_ref().map(|r| r.receipt().billed_seconds),
                amount: receipt.as_ref().map(|r| r.receipt().amount.to_string()),
                amount_minor: receipt.as_ref().map(|r| r.receipt().amount.minor_units),
                currency: receipt
                    .as_ref()
                    .map(|r| r.receipt().amount.currency.to_string()),
                dispute: Some(dispute.to_string()),
                not_charged: receipt
                    .as_ref()
                    .and_then(|r| r.receipt().without_media)
                    .map(|cause| cause.to_string()),
            }
        }
        ReceiptOutcome::Missing => ReceiptSummary {
            status: Kept::Missing,
            billed_seconds: None,
            amount: None,
            amount_minor: None,
            currency: None,
            dispute: None,
            not_charged: None,
        },
    };
    let ended_by = Role::from(end.ended_by);
    context
        .store
        .record_call(
            Role::Caller,
            call_id.to_string(),
            candidate.offer.provider(),
            options.destination.to_string(),
            end.answered_at,
            Some((end.ended_at, format!("{} (by the {ended_by})", end.cause))),
        )
        .await?;
    context
        .store
        .record_attempt(
            call_id.to_string(),
            candidate.offer.provider(),
            format!("answered; {}", end.cause),
            true,
            now,
        )
        .await?;
    let millis = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(CallReport {
        call_id: call_id.to_string(),
        destination: options.destination.to_string(),
        gateway: candidate.offer.offer().display_name.clone(),
        gateway_peer_id: identity::peer_id(&candidate.offer.provider())
            .map(|p| p.to_string())
            .unwrap_or_default(),
        prefix: candidate.route.prefix.to_string(),
        currency: tariff.currency.to_string(),
        price_per_minute: tariff.per_minute_money().decimal(),
        setup_fee: tariff.setup_fee_money().decimal(),
        failovers,
        command_to_answer_ms: millis(answered_at - started),
        invite_to_answer_ms: millis(invite_to_answer),
        command_to_first_media_ms: first_media_at.map(|at| millis(at - started)),
        phases: SetupPhases {
            lookup_ms: millis(lookup),
            stream_ms: millis(timeline.stream),
            invite_to_trying_ms: timeline.trying.map(|at| millis(at - invited_at)),
            invite_to_early_answer_ms: timeline.early_answer.map(|at| millis(at - invited_at)),
            invite_to_ringing_ms: timeline.ringing.map(|at| millis(at - invited_at)),
            invite_to_answer_ms: millis(invite_to_answer),
            answer_to_first_media_ms: first_media_at.map(|at| millis(at - answered_at)),
            sdp_answer_to_ice_ms: media.sdp_answer_to_ice.map(millis),
            ice_to_dtls_ms: media.ice_to_dtls.map(millis),
        },
        answered_by,
        media,
        ended_by,
        cause: end.cause.to_string(),
        receipt,
    })
}
