"""Forwarding: header hygiene, content decoding, media classification, the upstream client."""
