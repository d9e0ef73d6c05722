"""The ZooKeeper source: one member per child of a node, read with watches set.

``query`` reads spec.zookeeper; ``ensemble`` holds the client sessions; ``watch`` keeps one
watcher per distinct (connection, path, address field, credentials)."""
