#!/usr/bin/env python3
"""A link with delay and loss between two network namespaces, for the multi-host tests.

This kernel has no netem, so the link is a program: it opens a TAP device in each
namespace (`NS_A`/`DEV_A`, `NS_B`/`DEV_B`) and copies every Ethernet frame from one to the
other after `--delay-ms` (in order, as a cable plus a queue would), dropping each frame
with probability `--loss` in each direction, and the first `--drop-server-hellos` UDP
datagrams that open with a DTLS ServerHello (a DTLS server's flight 4), to lose one flight
on purpose as often as asked. The devices exist only while it runs: they go
away with the process, so nothing is left behind if a test dies.

It prints `ready` once both devices exist, runs until stdin closes (the test holds the
pipe, so a test that crashes takes the link down with it) or SIGTERM, and then prints one
line of counts: forwarded and dropped frames per direction.
"""

import argparse
import collections
import ctypes
import fcntl
import os
import random
import select
import signal
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

libc = ctypes.CDLL(None, use_errno=True)


def enter(namespace):
    """Moves this (single-threaded) process into the named network namespace."""
    fd = os.open(f"/var/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def open_tap(namespace, name):
    """A TAP device called `name` in `namespace`, as a file descriptor of raw frames."""
    enter(namespace)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


DTLS_HANDSHAKE = 22
SERVER_HELLO = 2


def opens_with_server_hello(frame):
    """Whether an Ethernet frame carries IPv4 UDP whose payload starts with a DTLS record
    holding a ServerHello (RFC 6347: 13-byte record header, then the handshake type)."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    payload = 14 + (frame[14] & 0x0F) * 4 + 8
    return (
        len(frame) > payload + 13
        and frame[payload] == DTLS_HANDSHAKE
        and frame[payload + 13] == SERVER_HELLO
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ns_a")
    parser.add_argument("dev_a")
    parser.add_argument("ns_b")
    parser.add_argument("dev_b")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="one way, each direction")
    parser.add_argument("--loss", type=float, default=0.0, help="0..1, each direction")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drop-server-hellos", type=int, default=0, help="either direction")
    args = parser.parse_args()

    a = open_tap(args.ns_a, args.dev_a)
    b = open_tap(args.ns_b, args.dev_b)
    delay = args.delay_ms / 1000.0
    rng = random.Random(args.seed)
    # Per direction: frames waiting for their time, oldest first (the delay is constant,
    # so arrival order is delivery order).
    queues = {a: collections.deque(), b: collections.deque()}
    other = {a: b, b: a}
    forwarded = {a: 0, b: 0}
    dropped = {a: 0, b: 0}
    hellos_to_drop = args.drop_server_hellos
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    while not stop:
        now = time.monotonic()
        for source, queue in queues.items():
            while queue and queue[0][0] <= now:
                _, frame = queue.popleft()
                try:
                    os.write(other[source], frame)
                except OSError:
                    # The far device is down or its queue full: a lost frame, as on a wire.
                    dropped[source] += 1
        due = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min(due) - time.monotonic()) if due else 1.0
        try:
            readable, _, _ = select.select([a, b, stdin], [], [], timeout)
        except InterruptedError:
            continue
        if stdin in readable and not os.read(stdin, 4096):
            break
        now = time.monotonic()
        for source in (a, b):
            if source not in readable:
                continue
            while True:
                try:
                    frame = os.read(source, 65536)
                except BlockingIOError:
                    break
                if args.loss > 0 and rng.random() < args.loss:
                    dropped[source] += 1
                    continue
                if hellos_to_drop > 0 and opens_with_server_hello(frame):
                    hellos_to_drop -= 1
                    dropped[source] += 1
                    continue
                forwarded[source] += 1
                queues[source].append((now + delay, frame))
    print(
        f"{args.dev_a}->{args.dev_b} forwarded {forwarded[a]} dropped {dropped[a]}; "
        f"{args.dev_b}->{args.dev_a} forwarded {forwarded[b]} dropped {dropped[b]}",
        flush=True,
    )


if __name__ == "__main__":
    main()
