"""Talking to a running llama-server: readiness, a completion and its tokens/s."""
