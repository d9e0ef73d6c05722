"""Membership sources: one shared watcher per distinct query, each turning its registry's data
into ``core.instance.Instance`` records (``base`` is what every source shares; ``consul``,
``etcd`` and ``zookeeper`` are the sources; ``connections`` is the operator's allow-list)."""
