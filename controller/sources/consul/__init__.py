"""The Consul source: a service's healthy instances, followed with blocking queries.

``query`` reads spec.service and spec.consul; ``decode`` turns health entries into instances;
``client`` speaks Consul's HTTP API; ``watch`` keeps one watcher per distinct query."""
