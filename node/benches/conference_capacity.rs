//! How many participants one bridge core mixes with under 1 % loss and under 1 % late
//! packets, and the mouth-to-ear delay through the bridge at that load.
//!
//! The bridge (`ConferenceBridge`: one mixing task per room, one task per participant's
//! WebRTC leg, G.711 decode and encode) runs alone on a single-threaded tokio runtime on
//! its own OS thread: one core's worth of bridge. The participants are real WebRTC
//! endpoints (ICE, DTLS, SRTP on 127.0.0.1) on a second runtime, in rooms of five, each
//! sending a 20 ms PCMU frame every 20 ms. Signalling goes straight to the bridge (no
//! libp2p): this measures the media path. For each load, after a 3 s warm-up, one talker
//! per room starts a tone and the others time its first mixed frame (mouth to ear); over
//! the next 10 s the participants count the mixed frames they receive (loss against one
//! per 20 ms) and the bridge counts frames that reached its jitter buffers after their
//! playout time (late) or never (missing).
//!
//! ```sh
//! cargo bench -p interlink-node --bench conference_capacity            # 25 50 100 200
//! cargo bench -p interlink-node --bench conference_capacity -- 300 400
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use interlink_gateway_plugin::audio::{SAMPLE_RATE, goertzel_power};
use interlink_gateway_plugin::conference::bridge::DEFAULT_JITTER_FRAMES;
use interlink_gateway_plugin::conference::{BridgeSettings, ConferenceBridge, RoomStats};
use interlink_gateway_plugin::webrtc_leg::MediaSettings;
use interlink_node::conference::participant::{OfferedParticipant, ToneParticipant};
use tokio::sync::{mpsc, oneshot};

const ROOM_SIZE: usize = 5;
const TALKER_TONE: f64 = 1000.0;
const WARM_UP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(10);

enum Command {
    Join {
        room: usize,
        sdp_offer: String,
        reply: oneshot::Sender<Option<String>>,
    },
    Stats(oneshot::Sender<(RoomStats, u64)>),
    Stop(oneshot::Sender<()>),
}

/// CPU time (user + system, in clock ticks of 10 ms) of the calling thread.
fn thread_cpu_ticks() -> u64 {
    cpu_ticks("/proc/thread-self/stat")
}

/// CPU time (user + system, in clock ticks of 10 ms) of the whole process.
fn process_cpu_ticks() -> u64 {
    cpu_ticks("/proc/self/stat")
}

fn cpu_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn start_bridge(max: u32) -> mpsc::Sender<Command> {
    let (commands, mut rx) = mpsc::channel::<Command>(64);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let bridge = ConferenceBridge::new(
                max,
                BridgeSettings {
                    media: MediaSettings::loopback(),
                    jitter_frames: DEFAULT_JITTER_FRAMES,
                },
            )
            .unwrap();
            let mut rooms = Vec::new();
            let mut participants = Vec::new();
            while let Some(command) = rx.recv().await {
                match command {
                    Command::Join {
                        room,
                        sdp_offer,
                        reply,
                    } => {
                        while rooms.len() <= room {
                            rooms.push(bridge.open_room());
                        }
                        match rooms[room].join(&sdp_offer).await {
                            Ok((answer, participant)) => {
                                participants.push(participant);
                                let _ = reply.send(Some(answer));
                            }
                            Err(e) => {
                                eprintln!("join refused: {e}");
                                let _ = reply.send(None);
                            }
                        }
                    }
                    Command::Stats(reply) => {
                        let mut total = RoomStats::default();
                        for (r, room) in rooms.iter().enumerate() {
                            let stats = room.stats().await;
                            for (key, s) in stats.participants {
                                total.participants.insert(key + 1000 * r as u32, s);
                            }
                            total.ticks += stats.ticks;
                            total.late_ticks += stats.late_ticks;
                            total.dropped_inputs += stats.dropped_inputs;
                            total.dropped_outputs += stats.dropped_outputs;
                        }
                        let _ = reply.send((total, thread_cpu_ticks()));
                    }
                    Command::Stop(reply) => {
                        for participant in participants.drain(..) {
                            participant.leave().await;
                        }
                        for room in rooms.drain(..) {
                            room.close().await;
                        }
                        let _ = reply.send(());
                        return;
                    }
                }
            }
        });
    });
    commands
}

async fn bridge_stats(bridge: &mpsc::Sender<Command>) -> (RoomStats, u64) {
    let (reply, answer) = oneshot::channel();
    bridge.send(Command::Stats(reply)).await.unwrap();
    answer.await.unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

async fn run_level(participants: usize) {
    let bridge = start_bridge(u32::try_from(participants).unwrap());
    let mut members: Vec<(usize, ToneParticipant)> = Vec::new();
    for i in 0..participants {
        let (offered, sdp) = OfferedParticipant::offer(&MediaSettings::loopback())
            .await
            .unwrap();
        let (reply, answer) = oneshot::channel();
        bridge
            .send(Command::Join {
                room: i / ROOM_SIZE,
                sdp_offer: sdp,
                reply,
            })
            .await
            .unwrap();
        match answer.await.unwrap() {
            Some(answer) => {
                let media = offered.accept_answer(&answer, None).await.unwrap();
                members.push((i % ROOM_SIZE, media));
            }
            None => offered.close().await,
        }
    }
    tokio::time::sleep(WARM_UP).await;

    let start = Instant::now();
    let process_before = process_cpu_ticks();
    let (stats_before, cpu_before) = bridge_stats(&bridge).await;
    let received_before: Vec<u64> = members.iter().map(|(_, m)| m.packets().0).collect();
    for (seat, member) in &members {
        if *seat == 0 {
            member.set_tone(Some(TALKER_TONE));
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut delays: Vec<Duration> = Vec::new();
    let mut deaf = 0;
    for (seat, member) in &members {
        if *seat == 0 {
            continue;
        }
        let onset = member
            .frames_since(start)
            .into_iter()
            .find(|(_, frame)| goertzel_power(frame, TALKER_TONE, SAMPLE_RATE) > 1.0e6);
        match onset {
            Some((at, _)) => delays.push(at.duration_since(start)),
            None => deaf += 1,
        }
    }
    tokio::time::sleep(MEASURE.saturating_sub(start.elapsed())).await;
    let (stats_after, cpu_after) = bridge_stats(&bridge).await;
    let process_after = process_cpu_ticks();
    let elapsed = start.elapsed();
    let received: u64 = members
        .iter()
        .zip(&received_before)
        .map(|((_, m), before)| m.packets().0 - before)
        .sum();
    let expected = members.len() as f64 * elapsed.as_secs_f64() / 0.020;
    let loss = (1.0 - received as f64 / expected).max(0.0);
    let (before, after) = (stats_before.total(), stats_after.total());
    let arrived = (after.received + after.late).saturating_sub(before.received + before.late);
    let late = after.late.saturating_sub(before.late);
    let played = after.played.saturating_sub(before.played);
    let missing = after.missing.saturating_sub(before.missing);
    let late_share = late as f64 / arrived.max(1) as f64;
    let mixer_loss = missing as f64 / (played + missing).max(1) as f64;
    let cpu = (cpu_after - cpu_before) as f64 / 100.0 / elapsed.as_secs_f64();
    let process_cpu = (process_after - process_before) as f64 / 100.0 / elapsed.as_secs_f64();
    delays.sort();
    println!(
        "{participants:>4} participants ({} joined, {} rooms): loss at the ears {:.2} %, \
         into the mixer {:.2} %, late {:.2} %, late ticks {}, dropped in/out {}/{}; \
         mouth to ear p50 {:.1} ms p95 {:.1} ms max {:.1} ms ({} of {} listeners heard the talker); \
         bridge thread CPU {:.0} % (whole process, participants included, {:.0} %)",
        members.len(),
        members.len().div_ceil(ROOM_SIZE),
        loss * 100.0,
        mixer_loss * 100.0,
        late_share * 100.0,
        stats_after.late_ticks - stats_before.late_ticks,
        stats_after.dropped_inputs - stats_before.dropped_inputs,
        stats_after.dropped_outputs - stats_before.dropped_outputs,
        percentile(&delays, 0.5).as_secs_f64() * 1000.0,
        percentile(&delays, 0.95).as_secs_f64() * 1000.0,
        delays.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        delays.len(),
        delays.len() + deaf,
        cpu * 100.0,
        process_cpu * 100.0,
    );
    for (_, member) in members {
        member.close().await;
    }
    let (reply, done) = oneshot::channel();
    bridge.send(Command::Stop(reply)).await.unwrap();
    let _ = done.await;
}

fn main() {
    let levels: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let levels = if levels.is_empty() {
        vec![25, 50, 100, 200]
    } else {
        levels
    };
    // The participants' side gets the other core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for participants in levels {
            run_level(participants).await;
        }
    });
}
