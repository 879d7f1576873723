#!/usr/bin/env python3
"""Benchmark client for `cargo xtask bench` case (j): N sequential unary calls of test.Echo/Unary
(tests/backends/grpc_server.py) with grpcio over an insecure channel to 127.0.0.1:PORT, after a
warm-up. Prints one line: `calls=<n> calls_per_s=<x> p50_ms=<x> p99_ms=<x>`. Every reply must echo
the request, else it exits 1."""
import sys
import time

import grpc


def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        unary = ch.unary_unary("/test.Echo/Unary", request_serializer=None, response_deserializer=None)
        for _ in range(50):
            unary(b"hi", timeout=10)
        lat = []
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            if unary(b"hi", timeout=10) != b"hi":
                sys.stderr.write("grpc_latency: wrong reply\n")
                return 1
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - start
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000.0
    print(f"calls={n} calls_per_s={n / total:.1f} p50_ms={pick(0.50):.3f} p99_ms={pick(0.99):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
