"""Upstream groups: peers, balancers, passive health, keep-alive pools."""
