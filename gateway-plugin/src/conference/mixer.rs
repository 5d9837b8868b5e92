//! The conference mixer: per-participant jitter buffers and a mix-minus, with no clock and
//! no sockets.
//!
//! Whoever drives it calls [`Mixer::push`] with each participant's decoded 20 ms frames as
//! they arrive (with their RTP sequence numbers), and [`Mixer::tick`] once every 20 ms.
//! Each tick takes the next frame of every participant's [`JitterBuffer`] and returns, for
//! each participant, the sum of everyone else's frames: each hears everyone but
//! themselves. Sums are taken in 32 bits and saturated to the 16-bit range, so loud rooms
//! clip instead of wrapping around.

use std::collections::BTreeMap;

/// Samples in a 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
/// Frames a jitter buffer holds ahead of playout before it resynchronises.
pub const MAX_FRAMES_AHEAD: u16 = 50;
/// Missing frames in a row after which a buffer stops playing and waits to fill again
/// (the participant went quiet, or its media stopped).
pub const IDLE_AFTER_MISSING: u32 = 10;

/// One 20 ms frame of linear audio.
pub type Frame = [i16; FRAME_SAMPLES];

/// What a jitter buffer saw, for loss and lateness figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames accepted into the buffer.
    pub received: u64,
    /// Frames played in time.
    pub played: u64,
    /// Frames that arrived after their playout time, and were dropped.
    pub late: u64,
    /// Frames that arrived twice.
    pub duplicates: u64,
    /// Playout slots with no frame (lost, or later than the buffer's delay).
    pub missing: u64,
    /// Times the buffer jumped to a sender far ahead of it.
    pub resyncs: u64,
}

/// Reorders one participant's frames by RTP sequence number and plays them out a fixed
/// number of frames after the first one arrived.
#[derive(Clone, Debug)]
pub struct JitterBuffer {
    /// Frames to hold before playing starts: the delay that absorbs jitter.
    depth: u16,
    frames: BTreeMap<u16, Frame>,
    /// The sequence number played next, once playing.
    next: Option<u16>,
    /// Ticks to wait before playing, counting down from `depth` after the first frame.
    prefill: Option<u16>,
    missing_in_a_row: u32,
    stats: JitterStats,
}

/// How far `seq` lies ahead of `base` on the wrapping 16-bit sequence space (negative:
/// behind).
fn distance(base: u16, seq: u16) -> i32 {
    i32::from(seq.wrapping_sub(base) as i16)
}

impl JitterBuffer {
    /// A buffer that plays `depth` frames (20 ms each) after the first arrives.
    pub fn new(depth: u16) -> JitterBuffer {
        JitterBuffer {
            depth: depth.clamp(1, MAX_FRAMES_AHEAD - 1),
            frames: BTreeMap::new(),
            next: None,
            prefill: None,
            missing_in_a_row: 0,
            stats: JitterStats::default(),
        }
    }

    /// Takes a frame with RTP sequence number `seq`.
    pub fn push(&mut self, seq: u16, frame: Frame) {
        match self.next {
            Some(next) => {
                let ahead = distance(next, seq);
                if ahead < 0 {
                    self.stats.late += 1;
                    return;
                }
                if ahead >= i32::from(MAX_FRAMES_AHEAD) {
                    // A sender that jumped far ahead (or restarted): start again from it.
                    self.stats.resyncs += 1;
                    self.frames.clear();
                    self.next = Some(seq);
                }
            }
            None => {
                // Not playing yet: the earliest frame seen decides where playing starts.
                if let Some((&first, _)) = self.frames.iter().next()
                    && distance(first, seq).unsigned_abs() >= u32::from(MAX_FRAMES_AHEAD)
                {
                    self.frames.clear();
                }
                if self.prefill.is_none() {
                    self.prefill = Some(self.depth);
                }
            }
        }
        if self.frames.insert(seq, frame).is_some() {
            self.stats.duplicates += 1;
        } else {
            self.stats.received += 1;
        }
    }

    /// The frame due now, if any; call once per 20 ms.
    pub fn pop(&mut self) -> Option<Frame> {
        let next = match (self.next, self.prefill) {
            (Some(next), _) => next,
            (None, Some(0)) => {
                let first = self.first_in_order()?;
                self.prefill = None;
                first
            }
            (None, Some(left)) => {
                self.prefill = Some(left - 1);
                return None;
            }
            (None, None) => return None,
        };
        self.next = Some(next.wrapping_add(1));
        match self.frames.remove(&next) {
            Some(frame) => {
                self.stats.played += 1;
                self.missing_in_a_row = 0;
                Some(frame)
            }
            None => {
                self.stats.missing += 1;
                self.missing_in_a_row += 1;
                if self.missing_in_a_row >= IDLE_AFTER_MISSING && self.frames.is_empty() {
                    // Quiet: wait to fill again rather than count silence as loss.
                    self.stats.missing -= u64::from(self.missing_in_a_row);
                    self.missing_in_a_row = 0;
                    self.next = None;
                }
                None
            }
        }
    }

    /// The earliest held frame in sequence order (the map's order breaks at wrap-around).
    fn first_in_order(&self) -> Option<u16> {
        let any = *self.frames.keys().next()?;
        self.frames
            .keys()
            .copied()
            .min_by_key(|&seq| distance(any, seq))
    }

    /// What the buffer has seen so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }
}

/// A room's mixer: one jitter buffer per participant, keyed by `K`.
#[derive(Clone, Debug)]
pub struct Mixer<K: Ord + Copy> {
    depth: u16,
    buffers: BTreeMap<K, JitterBuffer>,
    /// The frames of the current tick, reused across ticks.
    current: Vec<(K, Option<Frame>)>,
}

impl<K: Ord + Copy> Mixer<K> {
    /// A mixer whose jitter buffers delay playout by `depth` frames.
    pub fn new(depth: u16) -> Mixer<K> {
        Mixer {
            depth,
            buffers: BTreeMap::new(),
            current: Vec::new(),
        }
    }

    /// Adds a participant (no-op if present).
    pub fn add(&mut self, participant: K) {
        self.buffers
            .entry(participant)
            .or_insert_with(|| JitterBuffer::new(self.depth));
    }

    /// Removes a participant; returns its buffer's figures.
    pub fn remove(&mut self, participant: K) -> Option<JitterStats> {
        self.buffers.remove(&participant).map(|b| b.stats())
    }

    /// Participants in the mix.
    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    /// Whether nobody is in the mix.
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// A participant's frame with RTP sequence number `seq`; frames of unknown
    /// participants are ignored.
    pub fn push(&mut self, participant: K, seq: u16, frame: Frame) {
        if let Some(buffer) = self.buffers.get_mut(&participant) {
            buffer.push(seq, frame);
        }
    }

    /// A participant's jitter figures.
    pub fn stats(&self, participant: K) -> Option<JitterStats> {
        self.buffers.get(&participant).map(JitterBuffer::stats)
    }

    /// Advances 20 ms: each participant's mix of everyone else, handed to `out` one
    /// participant at a time.
    pub fn tick(&mut self, mut out: impl FnMut(K, &Frame)) {
        self.current.clear();
        let mut total = [0i32; FRAME_SAMPLES];
        for (&participant, buffer) in &mut self.buffers {
            let frame = buffer.pop();
            if let Some(frame) = &frame {
                for (sum, &sample) in total.iter_mut().zip(frame) {
                    *sum += i32::from(sample);
                }
            }
            self.current.push((participant, frame));
        }
        let mut mix = [0i16; FRAME_SAMPLES];
        for (participant, own) in &self.current {
            match own {
                Some(own) => {
                    for ((out, &sum), &sample) in mix.iter_mut().zip(&total).zip(own) {
                        *out = saturate(sum - i32::from(sample));
                    }
                }
                None => {
                    for (out, &sum) in mix.iter_mut().zip(&total) {
                        *out = saturate(sum);
                    }
                }
            }
            out(*participant, &mix);
        }
    }
}

/// Clamps a sum to the 16-bit sample range.
#[allow(clippy::cast_possible_truncation)] // clamped to the i16 range just before
fn saturate(sum: i32) -> i16 {
    sum.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: i16) -> Frame {
        [value; FRAME_SAMPLES]
    }

    /// Ticks once and collects each participant's mix (first sample, all equal here).
    fn tick(mixer: &mut Mixer<u32>) -> BTreeMap<u32, i16> {
        let mut heard = BTreeMap::new();
        mixer.tick(|p, mix| {
            assert!(mix.iter().all(|&s| s == mix[0]));
            heard.insert(p, mix[0]);
        });
        heard
    }

    #[test]
    fn everyone_hears_everyone_but_themselves() {
        let mut mixer = Mixer::new(1);
        for p in [1u32, 2, 3] {
            mixer.add(p);
            mixer.push(p, 100, frame(i16::try_from(p).unwrap_or_default() * 10));
        }
        // The first tick is the buffers' one frame of delay.
        assert_eq!(tick(&mut mixer), BTreeMap::from([(1, 0), (2, 0), (3, 0)]));
        assert_eq!(
            tick(&mut mixer),
            BTreeMap::from([(1, 50), (2, 40), (3, 30)])
        );
        // Nothing more was sent: silence for all.
        assert_eq!(tick(&mut mixer), BTreeMap::from([(1, 0), (2, 0), (3, 0)]));
    }

    #[test]
    fn loud_rooms_clip_instead_of_wrapping() {
        let mut mixer = Mixer::new(1);
        for p in 0u32..4 {
            mixer.add(p);
            let value = if p == 3 { i16::MIN } else { 30_000 };
            mixer.push(p, 7, frame(value));
        }
        tick(&mut mixer);
        let heard = tick(&mut mixer);
        // Participant 3 hears three times 30000: clipped to the top, not wrapped.
        assert_eq!(heard[&3], i16::MAX);
        // The others hear 30000 + 30000 - 32768 = 27232 exactly.
        assert_eq!(heard[&0], 27_232);
    }

    #[test]
    fn the_jitter_buffer_reorders_and_drops_late_frames() {
        let mut buffer = JitterBuffer::new(2);
        buffer.push(11, frame(11));
        buffer.push(10, frame(10));
        assert_eq!(buffer.pop(), None);
        assert_eq!(buffer.pop(), None);
        assert_eq!(buffer.pop().map(|f| f[0]), Some(10));
        assert_eq!(buffer.pop().map(|f| f[0]), Some(11));
        // 12 never came; 13 arrives in time, 12 too late.
        buffer.push(13, frame(13));
        assert_eq!(buffer.pop(), None);
        buffer.push(12, frame(12));
        assert_eq!(buffer.pop().map(|f| f[0]), Some(13));
        buffer.push(13, frame(13));
        let stats = buffer.stats();
        assert_eq!(stats.played, 3);
        assert_eq!(stats.missing, 1);
        assert_eq!(stats.late, 2);
        assert_eq!(stats.received, 3);
    }

    #[test]
    fn sequence_numbers_wrap_and_far_jumps_resynchronise() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(0, frame(2));
        buffer.push(u16::MAX, frame(1));
        assert_eq!(buffer.pop(), None);
        assert_eq!(buffer.pop().map(|f| f[0]), Some(1));
        assert_eq!(buffer.pop().map(|f| f[0]), Some(2));
        buffer.push(5000, frame(3));
        assert_eq!(buffer.stats().resyncs, 1);
        assert_eq!(buffer.pop().map(|f| f[0]), Some(3));
    }

    #[test]
    fn a_quiet_participant_is_not_counted_as_loss() {
        let mut buffer = JitterBuffer::new(1);
        buffer.push(1, frame(1));
        buffer.pop();
        buffer.pop();
        for _ in 0..100 {
            assert_eq!(buffer.pop(), None);
        }
        assert_eq!(buffer.stats().missing, 0);
        buffer.push(500, frame(5));
        assert_eq!(buffer.pop(), None);
        assert_eq!(buffer.pop().map(|f| f[0]), Some(5));
    }

    #[test]
    fn a_participant_who_leaves_stops_being_heard() {
        let mut mixer = Mixer::new(1);
        mixer.add(1u32);
        mixer.add(2);
        mixer.push(1, 0, frame(100));
        mixer.push(1, 1, frame(100));
        tick(&mut mixer);
        assert_eq!(tick(&mut mixer)[&2], 100);
        assert!(mixer.remove(1).is_some());
        mixer.push(1, 2, frame(100));
        assert_eq!(tick(&mut mixer), BTreeMap::from([(2, 0)]));
    }
}
