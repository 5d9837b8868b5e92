//! A call stream's bytes, read as the node reads them (`calls::wire::read_frame`: length
//! prefix, size limit, one frame), each frame fed to both sides' state machines as the
//! node's drivers do: a caller that sent the fixed invite, and a gateway that admitted it.
#![no_main]

use interlink_fuzz as fixtures;
use interlink_node::calls::wire;
use interlink_protocol::Timestamp;
use interlink_protocol::call::{CallerCall, Frame, GatewayCall};
use libfuzzer_sys::fuzz_target;

/// Frames read from one input at most (the node reads until the call ends).
const MAX_FRAMES: usize = 64;

/// The runtime the node's reader runs on (its frame deadline needs tokio's timer).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let now = fixtures::now_ms();
    let mut caller = CallerCall::new(
        fixtures::invite(),
        fixtures::caller_key(),
        fixtures::timers(),
        now,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut gateway = GatewayCall::new(
        fixtures::signed_invite(),
        fixtures::gateway_key(),
        fixtures::timers(),
    );
    gateway.admit(now);
    let mut reader = futures::io::Cursor::new(data);
    let mut at = now.0;
    for _ in 0..MAX_FRAMES {
        let frame = match runtime().block_on(wire::read_frame(&mut reader)) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(_) => break,
        };
        // One frame, one encoding.
        let encoded = frame
            .encode()
            .unwrap_or_else(|e| panic!("a decoded frame does not encode: {e}"));
        assert_eq!(Frame::decode(&encoded).as_ref(), Ok(&frame));
        at += 100;
        caller.handle_frame(frame.clone(), Timestamp(at));
        if matches!(frame, Frame::Answer { .. }) {
            caller.media_started(Timestamp(at));
        }
        gateway.handle_frame(frame, Timestamp(at));
        drain(&mut caller, &mut gateway);
    }
    // Whatever state they are left in, their deadlines end them.
    for _ in 0..4 {
        at += 120_000;
        caller.handle_timeout(Timestamp(at));
        gateway.handle_timeout(Timestamp(at));
        caller.connection_lost(Timestamp(at));
        gateway.connection_lost(Timestamp(at));
        drain(&mut caller, &mut gateway);
    }
});

fn drain(caller: &mut CallerCall, gateway: &mut GatewayCall) {
    while caller.poll_transmit().is_some() {}
    while caller.poll_event().is_some() {}
    while gateway.poll_transmit().is_some() {}
    while gateway.poll_event().is_some() {}
}
