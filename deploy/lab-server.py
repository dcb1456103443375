#!/usr/bin/python3
"""Real-server stand-in for the rvs lab: answers its name over HTTP (:80) and UDP (:9000).

`--http-port 0` leaves HTTP out (the NAT real servers serve HTTP with nginx instead).

The UDP socket is bound once per address (RIP, VIP, ...) rather than to 0.0.0.0 so a
reply to a datagram sent to the VIP leaves with the VIP as source, as LVS-DR requires.
"""
import argparse
import http.server
import selectors
import socket
import sys
import threading


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--http-port", type=int, default=80)
    ap.add_argument("--udp-port", type=int, default=9000)
    ap.add_argument("--udp-bind", action="append", default=[])
    args = ap.parse_args()
    body = (args.name + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *a) -> None:
            sys.stderr.write("http %s %s\n" % (self.client_address[0], fmt % a))
            sys.stderr.flush()

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    if args.http_port:
        httpd = Server(("0.0.0.0", args.http_port), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

    sel = selectors.DefaultSelector()
    for addr in args.udp_bind:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, args.udp_port))
        sel.register(s, selectors.EVENT_READ)
    sys.stderr.write("%s: http :%d, udp %s:%d\n" % (args.name, args.http_port, args.udp_bind, args.udp_port))
    sys.stderr.flush()
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            _, peer = s.recvfrom(65535)
            s.sendto(body, peer)
            sys.stderr.write("udp %s:%d\n" % peer)
            sys.stderr.flush()


if __name__ == "__main__":
    main()
