"""Writes scenarios.json: recorded inputs of every source kind, as each registry holds them (Consul
health replies; etcd keys and ZooKeeper children with their raw values), for
tests/unit/test_replay.py.
Run once; kept in the repository so that the inputs never change under the recorded outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def consul(node: str, sid: str, address: str = "", port: int = 9100, status: str = "passing",
           *, node_address: str = "", tags: tuple[str, ...] = (),
           meta: dict[str, str] | None = None,
           node_meta: dict[str, str] | None = None, weights: tuple[int, int] | None = None,
           node_status: str = "passing") -> dict[str, Any]:
    return {
        "Node": {"ID": f"id-{node}", "Node": node, "Address": node_address or f"10.9.0.{len(node)}",
                 "Datacenter": "dc1", "Meta": node_meta or {}, "CreateIndex": 7, "ModifyIndex": 9},
        "Service": {"ID": sid, "Service": "web", "Address": address, "Port": port,
                    "Tags": list(tags), "Meta": meta or {}, "EnableTagOverride": False,
                    "Weights": {"Passing": weights[0], "Warning": weights[1]} if weights
                    else {"Passing": 1, "Warning": 1},
                    "CreateIndex": 11, "ModifyIndex": 12},
        "Checks": [{"Node": node, "CheckID": "serfHealth", "Status": node_status},
                   {"Node": node, "CheckID": f"service:{sid}", "Status": status}],
    }


def scenarios() -> list[dict[str, Any]]:
    web = [consul(f"node-{i % 3}", f"web-{i}", f"10.0.1.{i}", node_meta={"zone": f"z{i % 2}"})
           for i in range(6)]
    return [
        {"name": "consul-default", "kind": "consul",
         "spec": {"service": {"name": "web"}, "shards": 32},
         "steps": [web, web[:5], web[:5] + [consul("node-9", "web-9", "10.0.1.9")], []]},
        {"name": "consul-rules", "kind": "consul", "agents": True,
         "spec": {"service": {"name": "web", "onlyPassing": False}, "shards": 16,
                  "replicationFactor": 2, "outputs": {"prometheusRelabel": True},
                  "members": {"identity": "meta:shard-id", "weightFrom": "meta:weight",
                              "zoneFrom": "node-meta:zone", "drainFrom": "tag:draining"}},
         "steps": [
             [consul(f"n{i}", f"api-{i}", f"10.0.2.{i}", 8080, meta={"shard-id": f"s{i}",
                     "weight": str(1 + i % 3)}, node_meta={"zone": "abc"[i % 3]})
              for i in range(5)],
             [consul(f"n{i}", f"api-{i}", f"10.0.2.{i}", 8080, "warning" if i == 1 else "passing",
                     meta={"shard-id": f"s{i}", "weight": str(1 + i % 3)},
                     node_meta={"zone": "abc"[i % 3]}, tags=("draining",) if i == 4 else ())
              for i in range(5)],
             [consul(f"n{i}", f"api-{i}", f"10.0.2.{i}", 8080,
                     meta={"shard-id": "s1" if i == 2 else f"s{i}", "weight": "2"})
              for i in range(5)],
             [consul(f"n{i}", f"api-{i}", f"10.0.2.{i}", 8080, meta={"shard-id": f"s{i}"})
              for i in range(3)],
         ]},
        {"name": "consul-weights-address", "kind": "consul",
         "spec": {"service": {"name": "web", "onlyPassing": False}, "shards": 24,
                  "algorithm": "rendezvous",
                  "members": {"identity": "address:port", "weightFrom": "weights",
                              "zoneFrom": "meta:rack", "drainFrom": "meta:drain"}},
         "steps": [
             [consul(f"n{i}", f"w-{i}", "", 9000 + i, "warning" if i == 0 else "passing",
                     node_address=f"10.3.0.{i}", weights=(3, 0 if i == 0 else 1),
                     meta={"rack": f"r{i % 2}", "drain": "no"}) for i in range(4)],
             [consul(f"n{i}", f"w-{i}", "", 9000 + i, "passing", node_address=f"10.3.0.{i}",
                     weights=(3, 1), meta={"rack": f"r{i % 2}", "drain": "yes" if i == 3 else "0"})
              for i in range(4)],
             [consul(f"n{i}", f"w-{i}", "", 9000 + i, "critical" if i == 2 else "passing",
                     node_address=f"10.3.0.{i}", weights=(3, 1), meta={"rack": "r0"},
                     node_status="warning" if i == 1 else "passing") for i in range(4)],
         ]},
        {"name": "consul-consistent", "kind": "consul",
         "spec": {"service": {"name": "web"}, "shards": 8, "algorithm": "consistent",
                  "virtualNodes": 20, "members": {"identity": "node"}},
         "steps": [[consul(f"host-{i}", "web", f"10.4.0.{i}") for i in range(3)],
                   [consul(f"host-{i}", "web", f"10.4.0.{i}") for i in (0, 2, 3)],
                   [consul("host-0", "web", "10.4.0.0"), consul("host-0", "web2", "10.4.0.9")]]},
        {"name": "etcd-values", "kind": "etcd",
         "spec": {"etcd": {"prefix": "/services/web"}, "shards": 16,
                  "members": {"weightFrom": "weights", "zoneFrom": "node-meta:zone",
                              "drainFrom": "field:draining"}},
         "steps": [
             {"/services/web/": "10.0.0.99:1", "/services/web/a": "10.5.0.1:9100",
              "/services/web/b": '{"address": "10.5.0.2:9100", "weight": 2, "zone": "z1"}',
              "/services/web/c": '{"address": "10.5.0.3", "port": 9200, "metadata": '
                                 '{"team": "x", "n": 3}, "zone": "z2", "draining": false}',
              "/services/web/d": "[fd00::4]:9100"},
             {"/services/web/a": "10.5.0.1:9100",
              "/services/web/b": '{"address": "10.5.0.2:9100", "weight": 3, "zone": "z1"}',
              "/services/web/c": '{"address": "10.5.0.3", "port": 9200, "draining": true}',
              "/services/web/d": "[fd00::4]:9100"},
             {"/services/web/a": "10.5.0.1:9100", "/services/web/d": "[fd00::4]:9100",
              "/services/web/e": "[" * 3000 + "]" * 3000},
             {"/services/web/a": "10.5.0.1:9100", "/services/web/e": "{" + '"a":{' * 4000},
             {"/services/web/a": "10.5.0.1:9100", "/services/web/f": "\udcff\udcfe"},
             {"/services/web/a": "10.5.0.1:9100", "/services/web/g": '{"address": ""}'},
             {"/services/web/a": "10.5.0.1:9100",
              "/services/web/h": '{"address": "10.5.0.8", "port": 70000}'},
             {"/services/web/a": "10.5.0.1:9100",
              "/services/web/i": '{"address": "10.5.0.9", "weight": "heavy"}'},
             {"/services/web/a": "10.5.0.1:9100",
              "/services/web/i": '{"address": "10.5.0.9:1", "weight": 0.5, "metadata": []}'},
             {"/services/web/a": "10.5.0.1:9100", "/services/web/h": "10.5.0.8:9100",
              "/services/web/i": '{"address": "10.5.0.9:1", "weight": 0.5}',
              "/services/web/k": '{"address": "[fd00::9]:7", "weight": 2.5, "zone": "z9", '
                                 '"metadata": {"x": true}}'},
             {"/services/web/a": "10.5.0.1:9100", "/services/web/h": "10.5.0.8:9100",
              "/services/web/i": '{"address": "10.5.0.9:1", "weight": 0.5}',
              "/services/web/j": "just-a-host"},
         ]},
        {"name": "etcd-identity", "kind": "etcd", "agents": True, "lagging": 1,
         "spec": {"etcd": {"prefix": "/r/"}, "shards": 12, "replicationFactor": 3,
                  "members": {"identity": "meta:name", "zoneFrom": "meta:zone",
                              "weightFrom": "meta:w", "drainFrom": "meta:drain"}},
         "steps": [
             {f"/r/{i}": json.dumps({"address": f"10.6.0.{i}:80", "metadata":
                                     {"name": f"m-{i}", "zone": "ab"[i % 2], "w": i + 1,
                                      "drain": "true" if i == 4 else "false"}})
              for i in range(6)},
             {f"/r/{i}": json.dumps({"address": f"10.6.0.{i}:80", "metadata":
                                     {"name": f"m-{i}", "zone": "ab"[i % 2], "w": i + 1}})
              for i in range(1, 6)},
             {f"/r/{i}": json.dumps({"address": f"10.6.0.{i}:80", "metadata": {"name": "same"}})
              for i in range(2)},
         ]},
        {"name": "zookeeper-frontend", "kind": "zookeeper", "agents": True,
         "spec": {"zookeeper": {"path": "/services/web/", "addressField": "frontend"},
                  "shards": 20,
                  "members": {"zoneFrom": "node-meta:zone", "drainFrom": "field:state",
                              "identity": "id"}},
         "steps": [
             {f"member_000000000{i}": json.dumps({"frontend": f"10.7.0.{i}:9100", "zone": f"z{i}",
                                                   "state": "active"}) for i in range(4)},
             {f"member_000000000{i}": json.dumps({"frontend": f"10.7.0.{i}:9100",
                                                   "state": "draining" if i == 2 else "active"})
              for i in range(4)},
             {f"member_000000000{i}": json.dumps({"frontend": f"10.7.0.{i}:9100"})
              for i in range(1, 4)},
             {"member_0000000001": "10.7.0.1:9100", "member_0000000003": "10.7.0.3:9100",
              "member_0000000009": '{"address": "10.7.0.9:1"}'},
             {"member_0000000001": "10.7.0.1:9100", "member_0000000003": "not json { at all"},
             {"member_0000000001": "10.7.0.1:9100", "member_0000000004": "{broken"},
             {"member_0000000001": "10.7.0.1:9100", "member_0000000003": "10.7.0.3:9100",
              "member_0000000005": "10.7.0.5:9100"},
         ]},
        {"name": "zookeeper-address", "kind": "zookeeper",
         "spec": {"zookeeper": {"path": "/z"}, "shards": 6,
                  "members": {"identity": "address:port", "weightFrom": "weights"}},
         "steps": [
             {f"c{i}": json.dumps({"address": f"10.8.0.{i % 3}", "port": 7000 + i, "weight": i + 1})
              for i in range(5)},
             {f"c{i}": json.dumps({"address": "10.8.0.1", "port": 7000}) for i in range(2)},
         ]},
    ]


if __name__ == "__main__":
    path = Path(__file__).with_name("scenarios.json")
    path.write_text(json.dumps(scenarios(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
