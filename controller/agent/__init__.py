"""The ring agent: one workload's side of a ring (``python -m controller agent``).

It follows one ring's ConfigMap through the Kubernetes API (not kubelet's volume sync, which takes a
minute or more), writes its files where the workload reads them, optionally renders this member's
Prometheus configuration, runs the workload's reload, and acknowledges the version it applied in a
Lease the operator reads back as the ring's convergence.
"""
