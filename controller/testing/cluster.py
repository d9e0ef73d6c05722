"""``make cluster``: start the local control plane, write an env file, run until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from controller.testing.controlplane import ControlPlane

ENV_FILE = Path(__file__).resolve().parents[2] / ".local" / "cluster.env"


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    plane = ControlPlane()
    if not plane.start_for_command_line():
        return 1
    try:
        if not plane.existing:
            plane.install_crds()
        ENV_FILE.parent.mkdir(exist_ok=True)
        plane.write_env_file(ENV_FILE)
        print(f"control plane up: kube-apiserver {plane.api_url}, consul http://{plane.consul_addr}")
        print("CRDs installed (crds/): ShardRing, ClusterKopfPeering")
        print(f"in another shell:  source {ENV_FILE}")
        print("then kubectl, consul and `make run` use it, for example:")
        print("  make run &")
        print("  kubectl create namespace monitoring")
        print("  kubectl apply -f examples/shardring.yaml")
        print("Ctrl-C tears everything down.", flush=True)
        stop.wait()
    finally:
        plane.stop()
        ENV_FILE.unlink(missing_ok=True)
        print("control plane stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
