"""The etcd source: one member per key under a prefix, listed then watched.

``query`` reads spec.etcd; ``gateway`` speaks etcd's JSON gateway; ``watch`` keeps one watcher
per distinct (connection, prefix, credentials)."""
