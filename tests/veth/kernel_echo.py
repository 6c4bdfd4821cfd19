#!/usr/bin/env python3
"""A kernel-TCP echo server for xdptcp's client tests: echo until FIN, then close.

usage: kernel_echo.py HOST PORT [--rcvbuf BYTES] [--pause-after BYTES --pause SECS]

--rcvbuf sets SO_RCVBUF on the listening socket (accepted sockets inherit
it), so a reader that stops fills and closes its window quickly.
--pause-after/--pause: after that many bytes on a connection the server
stops reading for SECS seconds, then resumes (a slow application: its
window fills, closes, and reopens with a window update).
"""
import argparse
import socket
import socketserver
import sys
import time

args = None


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        got = 0
        paused = args.pause_after is None
        while True:
            data = self.request.recv(1 << 16)
            if not data:
                break
            got += len(data)
            self.request.sendall(data)
            if not paused and got >= args.pause_after:
                paused = True
                print(f"paused after {got} bytes for {args.pause} s", flush=True)
                time.sleep(args.pause)
                print("resumed", flush=True)
        print(f"connection done: {got} bytes", flush=True)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024

    def server_bind(self):
        if args.rcvbuf:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        super().server_bind()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--rcvbuf", type=int, default=0)
    p.add_argument("--pause-after", type=int, default=None)
    p.add_argument("--pause", type=float, default=0.0)
    args = p.parse_args()
    with Server((args.host, args.port), Echo) as s:
        s.serve_forever()
