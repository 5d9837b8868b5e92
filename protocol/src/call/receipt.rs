//! Usage receipts: the signed record of what an answered call cost.
//!
//! When an answered call ends, the gateway computes a [`UsageReceipt`] from the accepted
//! tariff and the answered time, signs it ([`SignedReceipt`]) and sends it. The caller
//! checks it against the invite it signed and the time it saw the call last
//! ([`UsageReceipt::check`]): same call, same terms, a duration no longer than it
//! observed (plus a tolerance for the network), billed seconds and amount that follow
//! from the tariff. If all holds it countersigns ([`SettledReceipt`]), and both sides keep
//! the same bytes, from which settlement is a sum.
//!
//! A settled receipt is `caller ‖ caller's signature ‖ gateway-signed receipt`, the caller
//! signing under [`COUNTERSIGN_DOMAIN`] the gateway's exact bytes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::call::messages::{ByeCause, CallId, Invite, OfferRef};
use crate::codec::Limit;
use crate::destination::{E164, Prefix};
use crate::envelope::{self, Countersignable, Countersigned, Signable, Signed};
use crate::identity::ProviderId;
use crate::money::Money;
use crate::offer::Tariff;
use crate::time::Timestamp;

/// Largest receipt, signed or settled.
pub const MAX_RECEIPT_BYTES: usize = 4096;
/// Prepended to a receipt's body before the gateway signs it.
pub const RECEIPT_DOMAIN: &[u8] = b"interlink/receipt/v1\0";
/// Prepended to the gateway-signed receipt before the caller countersigns it.
pub const COUNTERSIGN_DOMAIN: &[u8] = b"interlink/receipt-countersign/v1\0";
/// How much longer than the caller saw it a call may be billed: a round trip of
/// signalling (the gateway sees the answer earlier and the hang-up later) and clock
/// granularity.
pub const DURATION_TOLERANCE: Duration = Duration::from_secs(2);

/// What an answered call cost, as the gateway reckons it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    pub call_id: CallId,
    /// The offer the call was placed under; its provider is the gateway that signs.
    pub offer: OfferRef,
    pub caller: ProviderId,
    pub destination: E164,
    pub prefix: Prefix,
    /// The accepted tariff.
    pub tariff: Tariff,
    pub answered_at: Timestamp,
    pub ended_at: Timestamp,
    /// Answered time rounded up to the tariff's billing increment; 0 when not charged.
    pub billed_seconds: u64,
    pub amount: Money,
    /// Set when media never flowed both ways before the call ended: the call is not
    /// charged (no setup fee either), and this is how it ended.
    pub without_media: Option<ByeCause>,
}

/// Why a caller refuses a receipt. Sent to the gateway in `ReceiptRefused`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptDispute {
    #[error("the receipt cannot be read or its signature does not verify")]
    Unreadable,
    #[error("the receipt is for another call, offer or caller")]
    WrongCall,
    #[error("the receipt's destination, route or tariff differ from the accepted ones")]
    WrongTerms,
    #[error("{claimed_ms} ms billed, but the call lasted {observed_ms} ms as the caller saw it")]
    DurationTooLong { claimed_ms: u64, observed_ms: u64 },
    #[error("{claimed} billed seconds, the tariff gives {expected}")]
    WrongBilledSeconds { claimed: u64, expected: u64 },
    #[error("an amount of {claimed} minor units, the tariff gives {expected}")]
    WrongAmount { claimed: u64, expected: u64 },
    #[error("the call is charged, but the caller never heard its media")]
    ChargedWithoutMedia,
}

impl UsageReceipt {
    /// The receipt of the call `invite` placed, answered and ended at these times, media
    /// having flowed both ways: charged by the tariff from the answer.
    pub fn for_call(invite: &Invite, answered_at: Timestamp, ended_at: Timestamp) -> UsageReceipt {
        let billed_seconds = invite.tariff.billed_seconds(ended_at.since(answered_at));
        UsageReceipt {
            billed_seconds,
            amount: invite.tariff.charge(billed_seconds),
            ..UsageReceipt::terms(invite, answered_at, ended_at)
        }
    }

    /// The receipt of an answered call through which media never flowed both ways: not
    /// charged, and ended by `cause`.
    pub fn without_media(
        invite: &Invite,
        answered_at: Timestamp,
        ended_at: Timestamp,
        cause: ByeCause,
    ) -> UsageReceipt {
        UsageReceipt {
            without_media: Some(cause),
            ..UsageReceipt::terms(invite, answered_at, ended_at)
        }
    }

    /// The call's terms and times, nothing billed yet.
    fn terms(invite: &Invite, answered_at: Timestamp, ended_at: Timestamp) -> UsageReceipt {
        UsageReceipt {
            call_id: invite.call_id,
            offer: invite.offer,
            caller: invite.caller,
            destination: invite.destination.clone(),
            prefix: invite.prefix.clone(),
            tariff: invite.tariff,
            answered_at,
            ended_at,
            billed_seconds: 0,
            amount: Money::new(invite.tariff.currency, 0),
            without_media: None,
        }
    }

    /// Whether the call is charged at all.
    pub fn is_charged(&self) -> bool {
        self.without_media.is_none()
    }

    /// The answered time the receipt claims.
    pub fn duration(&self) -> Duration {
        self.ended_at.since(self.answered_at)
    }

    /// Checks the receipt against the invite the caller signed, the answered time it
    /// observed itself and whether it heard the call's media (and told the gateway so).
    pub fn check(
        &self,
        invite: &Invite,
        observed: Duration,
        heard_media: bool,
    ) -> Result<(), ReceiptDispute> {
        if self.call_id != invite.call_id
            || self.offer != invite.offer
            || self.caller != invite.caller
        {
            return Err(ReceiptDispute::WrongCall);
        }
        if self.destination != invite.destination
            || self.prefix != invite.prefix
            || self.tariff != invite.tariff
        {
            return Err(ReceiptDispute::WrongTerms);
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.ended_at < self.answered_at || self.duration() > observed + DURATION_TOLERANCE {
            return Err(ReceiptDispute::DurationTooLong {
                claimed_ms: millis(self.duration()),
                observed_ms: millis(observed),
            });
        }
        if self.is_charged() && !heard_media {
            return Err(ReceiptDispute::ChargedWithoutMedia);
        }
        let expected = if self.is_charged() {
            self.tariff.billed_seconds(self.duration())
        } else {
            0
        };
        if self.billed_seconds != expected {
            return Err(ReceiptDispute::WrongBilledSeconds {
                claimed: self.billed_seconds,
                expected,
            });
        }
        let amount = if self.is_charged() {
            self.tariff.charge(expected)
        } else {
            Money::new(self.tariff.currency, 0)
        };
        if self.amount != amount {
            return Err(ReceiptDispute::WrongAmount {
                claimed: self.amount.minor_units,
                expected: amount.minor_units,
            });
        }
        Ok(())
    }
}

/// A receipt signed by the gateway (the offer's provider); it exists only verified.
pub type SignedReceipt = Signed<UsageReceipt>;
/// A receipt signed by the gateway and countersigned by the caller.
pub type SettledReceipt = Countersigned<UsageReceipt>;

impl Signable for UsageReceipt {
    const DOMAIN: &'static [u8] = RECEIPT_DOMAIN;
    type BodyLimit = Limit<MAX_RECEIPT_BYTES>;
    type Context = ();
    type Error = envelope::Error;

    fn signer(&self) -> ProviderId {
        self.offer.provider
    }
}

impl Countersignable for UsageReceipt {
    const COUNTERSIGN_DOMAIN: &'static [u8] = COUNTERSIGN_DOMAIN;
    const MAX_COUNTERSIGNED_BYTES: usize = MAX_RECEIPT_BYTES;

    fn countersigner(&self) -> ProviderId {
        self.caller
    }
}

impl SignedReceipt {
    /// Reads and verifies a gateway-signed receipt.
    pub fn decode(bytes: &[u8]) -> Result<SignedReceipt, envelope::Error> {
        Signed::open(bytes, &())
    }

    /// The receipt.
    pub fn receipt(&self) -> &UsageReceipt {
        self.value()
    }
}

impl SettledReceipt {
    /// Reads and verifies both signatures of a settled receipt.
    pub fn decode(bytes: &[u8]) -> Result<SettledReceipt, envelope::Error> {
        Countersigned::open(bytes, &())
    }

    /// The receipt.
    pub fn receipt(&self) -> &UsageReceipt {
        self.value()
    }

    /// The gateway-signed receipt inside.
    pub fn gateway_signed(&self) -> &[u8] {
        self.signed_bytes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use crate::money::Currency;

    pub(crate) fn invite(caller: &SecretKey, gateway: &SecretKey) -> Invite {
        Invite {
            call_id: CallId::from_bytes([9; 16]),
            destination: E164::parse("+447700900123").unwrap(),
            offer: OfferRef {
                provider: gateway.provider_id(),
                seq: 7,
            },
            prefix: Prefix::new("447").unwrap(),
            tariff: Tariff {
                currency: Currency::new("GBP").unwrap(),
                setup_fee: 5,
                per_minute: 3,
                billing_increment_secs: 30,
            },
            caller: caller.provider_id(),
            sdp_offer: "v=0".into(),
            sent_at: Timestamp(1_000_000),
        }
    }

    fn keys() -> (SecretKey, SecretKey) {
        (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
        )
    }

    #[test]
    fn the_receipt_follows_from_the_tariff() {
        let (caller, gateway) = keys();
        let invite = invite(&caller, &gateway);
        // 61 s answered, 30 s increments: 90 s billed; 3 per minute → 4.5 → 5, plus 5 setup.
        let receipt = UsageReceipt::for_call(&invite, Timestamp(2_000_000), Timestamp(2_061_000));
        assert_eq!(receipt.billed_seconds, 90);
        assert_eq!(receipt.amount.minor_units, 10);
        assert_eq!(
            receipt.check(&invite, Duration::from_secs(61), true),
            Ok(())
        );
    }

    #[test]
    fn a_call_without_media_is_not_charged_and_a_charge_needs_the_callers_ear() {
        let (caller, gateway) = keys();
        let invite = invite(&caller, &gateway);
        let observed = Duration::from_secs(10);
        let (answered, ended) = (Timestamp(2_000_000), Timestamp(2_010_000));
        let silent = UsageReceipt::without_media(&invite, answered, ended, ByeCause::MediaTimeout);
        assert!(!silent.is_charged());
        assert_eq!((silent.billed_seconds, silent.amount.minor_units), (0, 0));
        // Nothing to pay is agreeable whatever the caller heard.
        assert_eq!(silent.check(&invite, observed, false), Ok(()));
        assert_eq!(silent.check(&invite, observed, true), Ok(()));
        // Not charged means not charged: no seconds, no setup fee.
        let mut fee = silent.clone();
        fee.amount.minor_units = invite.tariff.setup_fee;
        assert!(matches!(
            fee.check(&invite, observed, false),
            Err(ReceiptDispute::WrongAmount { .. })
        ));
        let mut seconds = silent;
        seconds.billed_seconds = 30;
        assert!(matches!(
            seconds.check(&invite, observed, false),
            Err(ReceiptDispute::WrongBilledSeconds { .. })
        ));
        // A charge for a call whose media the caller never heard is refused.
        let charged = UsageReceipt::for_call(&invite, answered, ended);
        assert_eq!(
            charged.check(&invite, observed, false),
            Err(ReceiptDispute::ChargedWithoutMedia)
        );
        assert_eq!(charged.check(&invite, observed, true), Ok(()));
    }

    #[test]
    fn sign_countersign_decode() {
        let (caller, gateway) = keys();
        let invite = invite(&caller, &gateway);
        let receipt = UsageReceipt::for_call(&invite, Timestamp(2_000_000), Timestamp(2_010_000));
        let signed = SignedReceipt::sign(receipt.clone(), &gateway).unwrap();
        assert_eq!(
            SignedReceipt::decode(signed.as_bytes()).map(|s| s.receipt().clone()),
            Ok(receipt.clone())
        );
        let settled = signed.countersign(&caller).unwrap();
        let decoded = SettledReceipt::decode(settled.as_bytes()).unwrap();
        assert_eq!(decoded.receipt(), &receipt);
        assert_eq!(decoded.gateway_signed(), signed.as_bytes());
        // Only the caller can countersign, only the gateway can sign.
        assert!(signed.countersign(&gateway).is_err());
        assert!(SignedReceipt::sign(receipt, &caller).is_err());
    }

    #[test]
    fn tampered_receipts_are_refused() {
        let (caller, gateway) = keys();
        let invite = invite(&caller, &gateway);
        let observed = Duration::from_secs(10);
        let honest = UsageReceipt::for_call(&invite, Timestamp(2_000_000), Timestamp(2_010_000));

        let mut overcharged = honest.clone();
        overcharged.amount.minor_units += 1;
        assert!(matches!(
            overcharged.check(&invite, observed, true),
            Err(ReceiptDispute::WrongAmount { .. })
        ));

        let mut padded = honest.clone();
        padded.billed_seconds = 60;
        assert!(matches!(
            padded.check(&invite, observed, true),
            Err(ReceiptDispute::WrongBilledSeconds { .. })
        ));

        let longer = UsageReceipt::for_call(&invite, Timestamp(2_000_000), Timestamp(2_020_000));
        assert!(matches!(
            longer.check(&invite, observed, true),
            Err(ReceiptDispute::DurationTooLong { .. })
        ));

        let mut repriced = honest.clone();
        repriced.tariff.per_minute = 4;
        assert_eq!(
            repriced.check(&invite, observed, true),
            Err(ReceiptDispute::WrongTerms)
        );

        let mut other_call = honest;
        other_call.call_id = CallId::from_bytes([1; 16]);
        assert_eq!(
            other_call.check(&invite, observed, true),
            Err(ReceiptDispute::WrongCall)
        );

        // A flipped bit in a signed receipt breaks its signature.
        let signed = SignedReceipt::sign(
            UsageReceipt::for_call(&invite, Timestamp(0), Timestamp(1000)),
            &gateway,
        )
        .unwrap();
        let mut bytes = signed.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(SignedReceipt::decode(&bytes).is_err());
    }

    /// A receipt signed and countersigned by the hand-written openers the envelope
    /// replaced: both signatures made by earlier builds verify.
    #[test]
    fn a_receipt_settled_by_an_earlier_build_still_verifies() {
        let bytes = crate::signed::tests::hex(
            "\
            fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618ae4f7845b603c99d\
            bcd05ecebab4444ab090ec4fc6ea6908b351183b56b1c1f759b382377b9b3d7087806d1e2c4e43ca\
            8d68ce5b5c50741a91099c6a5498a200ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92\
            421eea691446d22c2eebf43f8c303ee20da1de21285d2eae90fa98decdbec788523d6b0472c9c84a\
            82266398d5109b577a9371c00df8e85a7e710d664f78efd9ba0da0769299fe0c0505050505050505\
            0505050505050505ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c\
            2afd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f6180d2b3434373730\
            303930303132330334343747425001023cfdc8505c18a3010000fd103f5d18a30100007847425005\
            00",
        );
        let settled = SettledReceipt::decode(&bytes).unwrap();
        let caller = SecretKey::from_seed(&[9; 32]);
        let gateway = SecretKey::from_seed(&[7; 32]);
        assert_eq!(settled.receipt().caller, caller.provider_id());
        let signed = SignedReceipt::decode(settled.gateway_signed()).unwrap();
        assert_eq!(signed.signer(), gateway.provider_id());
        assert_eq!(signed.countersign(&caller).unwrap(), settled);
        let again = SignedReceipt::sign(settled.receipt().clone(), &gateway).unwrap();
        assert_eq!(again, signed);
    }
}
