"""The Kubernetes source: the serving endpoints of a Service in the ring's namespace.

``query`` reads spec.kubernetes; ``slices`` turns EndpointSlices into instances; ``api`` lists
and watches them; ``watch`` keeps one watcher per Service."""
