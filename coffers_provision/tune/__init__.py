"""`tune`: deploy every placement in turn on a host, measure llama-server's tokens/s, keep
the records, and leave the fastest deployed (docs/tune.md)."""
