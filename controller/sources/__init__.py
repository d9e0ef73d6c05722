"""Membership sources: one shared watcher per distinct query, each turning its registry's data
into ``core.instance.Instance`` records (``base`` is what every source shares; ``consul``,
``etcd``, ``zookeeper`` and ``kubernetes`` are the sources; ``registration`` reads etcd and
ZooKeeper values; ``connections`` is the operator's allow-list)."""
