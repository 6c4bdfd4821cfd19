#!/usr/bin/env python3
"""Client-side checks run in the peer namespace with the kernel's own TCP.
Usage: peer.py CHECK [ARGS]; prints one line and exits 0 on success."""
import hashlib
import os
import socket
import sys
import threading
import time

HOST = "198.18.0.1"


def echo(n, port=7, timeout=30):
    data = os.urandom(n)
    s = socket.create_connection((HOST, port), timeout=timeout)
    got = bytearray()
    failed = []

    def writer():
        # One sendall per 64 KiB: Python's socket timeout bounds a whole
        # sendall call, so `timeout` stays "no progress for that long"
        # rather than a limit on the entire transfer.
        try:
            view = memoryview(data)
            for off in range(0, n, 1 << 16):
                s.sendall(view[off:off + (1 << 16)])
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            failed.append(e)

    t = threading.Thread(target=writer)
    t.start()
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    t.join()
    s.close()
    if failed:
        raise SystemExit(f"echo: sending failed after {len(got)} bytes came back: {failed[0]!r}")
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        raise SystemExit(f"echo mismatch: sent {n}, got {len(got)}")
    return len(got)


def check_echo(n="1048576"):
    print("echo", echo(int(n)), "bytes verified by hash")


def check_concurrent(count="200", n="20000"):
    count, n = int(count), int(n)
    errors = []

    def one():
        try:
            echo(n)
        except BaseException as e:  # noqa: BLE001 - report any failure
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} of {count} failed: {errors[:3]}")
    print(count, "concurrent connections echoed and verified")


def check_many(count="5000", n="100"):
    """`count` connections open at once, each echoing `n` bytes, driven by
    one selector loop (threads would not scale to thousands)."""
    import selectors

    count, n = int(count), int(n)
    sel = selectors.DefaultSelector()
    conns = {}
    deadline = time.time() + 120
    for i in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((HOST, 7))
        payload = i.to_bytes(4, "big") * (n // 4)
        conns[s] = {"out": payload, "want": payload, "got": b"", "sent": False}
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ)
    done = 0
    opened = 0
    while done < count and time.time() < deadline:
        for key, ev in sel.select(timeout=1):
            s = key.fileobj
            c = conns[s]
            if ev & selectors.EVENT_WRITE and not c["sent"]:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise SystemExit("connect failed")
                opened += 1
                s.sendall(c["out"])
                c["sent"] = True
                sel.modify(s, selectors.EVENT_READ)
            elif ev & selectors.EVENT_READ:
                data = s.recv(65536)
                c["got"] += data
                if len(c["got"]) >= len(c["want"]) or not data:
                    if c["got"] != c["want"]:
                        raise SystemExit("wrong echo")
                    done += 1
                    sel.unregister(s)
                    s.close()
    if done < count:
        raise SystemExit(f"only {done} of {count} connections echoed ({opened} opened)")
    print(count, "concurrent connections, each echoed and verified")


def check_refused(port="9"):
    try:
        socket.create_connection((HOST, int(port)), timeout=5)
    except ConnectionRefusedError:
        print("connection to closed port", port, "refused")
        return
    raise SystemExit("connection to a closed port was not refused")


def check_half_close():
    s = socket.create_connection((HOST, 7), timeout=10)
    s.sendall(b"half-close works")
    s.shutdown(socket.SHUT_WR)  # our FIN; we keep reading
    got = b""
    while True:
        c = s.recv(4096)
        if not c:
            break
        got += c
    if got != b"half-close works":
        raise SystemExit(f"half-close: got {got!r}")
    print("half-close: data echoed after our FIN, then their FIN")


def check_discard(mib="200"):
    n = int(mib) << 20
    s = socket.create_connection((HOST, 9999), timeout=30)
    chunk = b"\0" * (1 << 20)
    t0 = time.time()
    sent = 0
    while sent < n:
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    if s.recv(1) != b"":
        raise SystemExit("discard answered with data")
    s.close()
    dt = time.time() - t0
    print(f"discard: {mib} MiB in {dt:.2f}s ({n * 8 / dt / 1e9:.2f} Gbit/s)")


def check_rst_then_new():
    s = socket.create_connection((HOST, 7), timeout=10)
    s.sendall(os.urandom(200000))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()  # linger 0: RST mid-transfer
    time.sleep(0.2)
    echo(100000)
    print("after a RST mid-transfer, a new connection works")


def check_keepalive_http(count="1000"):
    count = int(count)
    s = socket.create_connection((HOST, 80), timeout=10)
    f = s.makefile("rb")
    for _ in range(count):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status = f.readline()
        if not status.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"bad status {status!r}")
        length = 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        f.read(length)
    s.close()
    print(count, "keep-alive requests answered on one connection")


def check_legit(seconds="10", min_ratio="0.99", workers="8"):
    """Legitimate clients during an attack: `workers` threads connect,
    echo 64 bytes and close, one connection after another, for `seconds`.
    Each connection may take up to 40 s, as a patient client's would: the
    kernel retransmits a lost SYN after 1, 3, 7, 15 and 31 s, and a flood
    that saturates the link loses legitimate frames too. Passes when at
    least `min_ratio` of them succeed; says why the others failed."""
    seconds, min_ratio, workers = float(seconds), float(min_ratio), int(workers)
    end = time.time() + seconds
    results = []
    failures = {}
    lock = threading.Lock()

    def one():
        while time.time() < end:
            ok = False
            try:
                s = socket.create_connection((HOST, 7), timeout=40)
                s.settimeout(40)
                s.sendall(b"x" * 64)
                got = b""
                while len(got) < 64:
                    chunk = s.recv(64 - len(got))
                    if not chunk:
                        break
                    got += chunk
                s.close()
                ok = got == b"x" * 64
                why = None if ok else f"short or wrong echo ({len(got)} bytes)"
            except OSError as e:
                ok, why = False, type(e).__name__
            with lock:
                results.append(ok)
                if why:
                    failures[why] = failures.get(why, 0) + 1

    threads = [threading.Thread(target=one) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    good = sum(results)
    ratio = good / max(len(results), 1)
    print(f"legitimate connections: {good} of {len(results)} succeeded ({ratio:.2%})")
    if failures:
        print("failures:", failures)
    if len(results) < workers or ratio < min_ratio:
        raise SystemExit("too few legitimate connections succeeded")


def check_blind_victim(local_port="62001", seconds="6"):
    """An established connection from a fixed port while an attacker forges
    its address: echoes a counter every 20 ms for `seconds` and checks each
    reply. Passes if the connection is never reset and no reply is wrong."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(local_port)))
    s.settimeout(10)
    s.connect((HOST, 7))
    print("connected; under attack now", flush=True)
    end = time.time() + float(seconds)
    n = 0
    while time.time() < end:
        msg = f"{n:08d}".encode()
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(len(msg) - len(got))
            if not chunk:
                raise SystemExit("the server closed the connection")
            got += chunk
        if got != msg:
            raise SystemExit(f"wrong echo {got!r} for {msg!r}")
        n += 1
        time.sleep(0.02)
    s.close()
    print(n, "echoes verified; the connection survived")


def check_expect_fin(timeout="10"):
    """Opens a connection, echoes once, then waits for the server to close:
    passes on a FIN (orderly EOF) within `timeout` s, fails on a RST."""
    s = socket.create_connection((HOST, 7), timeout=5)
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    print("connected; waiting for the server's FIN", flush=True)
    s.settimeout(float(timeout))
    try:
        data = s.recv(1)
    except ConnectionResetError:
        raise SystemExit("reset instead of FIN")
    if data != b"":
        raise SystemExit(f"unexpected data {data!r}")
    s.close()
    print("server closed with a FIN")


if __name__ == "__main__":
    globals()["check_" + sys.argv[1].replace("-", "_")](*sys.argv[2:])
