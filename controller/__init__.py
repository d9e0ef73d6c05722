"""shardring: a kopf operator that publishes consistent shard rings of Consul services."""

__version__ = "0.1.0"
