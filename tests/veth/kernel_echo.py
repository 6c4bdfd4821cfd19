#!/usr/bin/env python3
"""A kernel-TCP echo server for xdptcp's client tests: echo until FIN, then close."""
import socket
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(1 << 16)
            if not data:
                break
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    with Server((host, port), Echo) as s:
        s.serve_forever()
