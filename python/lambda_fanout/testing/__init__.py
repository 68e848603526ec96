"""Local test and benchmark infrastructure: moto's server behind a latency and fault proxy.

Development-only: nothing in the runtime imports this package, and the layer build
leaves it out. Everything here listens on and talks to 127.0.0.1 only.
"""
