"""Sharded Prometheus on loopback, for tests and benchmarks: small /metrics targets registered in
Consul, real Prometheus servers registered as the scraper service (an HTTP check on /-/ready), and a
ring agent beside each one that renders its configuration and reloads it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import consul

from controller.testing.processes import REPO, Process, free_port, http_ok

_HEAD_SERIES = re.compile(rb"^prometheus_tsdb_head_series (\S+)$", re.M)


class _Metrics(BaseHTTPRequestHandler):
    server: _TargetServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _TargetServer(ThreadingHTTPServer):
    daemon_threads = True
    body = b""


def exposition(series: int) -> bytes:
    """A /metrics page of ``series`` gauges (``series`` samples per scrape)."""
    lines = ["# TYPE shardring_test_up gauge"] + \
        [f'shardring_test_up{{series="{i}"}} 1' for i in range(series)]
    return ("\n".join(lines) + "\n").encode()


class Targets:
    """``count`` HTTP servers on loopback, each answering /metrics: one series each, or as many
    as ``series`` gives per target (a skewed fleet)."""

    def __init__(self, count: int, series: list[int] | None = None):
        self.series = series or [1] * count
        self.servers = [_TargetServer(("127.0.0.1", 0), _Metrics) for _ in range(count)]
        for server, many in zip(self.servers, self.series, strict=True):
            server.body = exposition(many)
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{s.server_address[1]}" for s in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

@dataclass
class PrometheusServer:
    assets: Path
    workdir: Path
    config: Path
    port: int = field(default_factory=free_port)
    process: Process | None = None
    flags: tuple[str, ...] = ()  # more of Prometheus' flags

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = Process("prometheus", [
            str(self.assets / "prometheus"), f"--config.file={self.config}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
            f"--storage.tsdb.path={self.workdir / 'data'}", "--log.level=warn",
            # Prometheus applies new target sets (after a reload too) on a 5 s tick by default.
            "--scrape.discovery-reload-interval=1s", *self.flags],
            self.workdir / "prometheus.log")
        self.process.start()

    def ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def active_targets(self, job: str) -> set[str] | None:
        """The ``instance`` of every active target of ``job``; None when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets?state=active",
                                        timeout=2) as reply:
                found = json.load(reply)
        except (OSError, ValueError):
            return None
        return {t["labels"].get("instance", "") for t in found["data"]["activeTargets"]
                if t["labels"].get("job") == job}

    def samples_scraped(self) -> float | None:
        """Samples per scrape over every target it scrapes now (its load); None: no answer."""
        return self._scalar("sum(scrape_samples_scraped)")

    def scraped_instances(self) -> set[str] | None:
        """The ``instance`` of every target whose last scrape counts in its load now: one it
        stopped scraping counts until Prometheus marks its series stale, just over two scrape
        intervals later; None: no answer."""
        result = self._query("scrape_samples_scraped")
        return None if result is None else {r["metric"].get("instance", "") for r in result}

    def _scalar(self, expression: str) -> float | None:
        result = self._query(expression)
        if result is None:
            return None
        return float(result[0]["value"][1]) if result else 0.0

    def _query(self, expression: str) -> list[dict] | None:
        query = urllib.parse.urlencode({"query": expression})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=5) as reply:
                return list(json.load(reply)["data"]["result"])
        except (OSError, ValueError, KeyError):
            return None

    def head_series(self) -> float | None:
        """Its own ``prometheus_tsdb_head_series``."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as reply:
                found = _HEAD_SERIES.search(reply.read())
        except OSError:
            return None
        return float(found.group(1)) if found else None

    def kill(self) -> None:
        if self.process is not None:
            self.process.stop(sig=signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class AgentProcess:
    """``python -m controller agent`` as a subprocess (its output in ``log``)."""

    def __init__(self, workdir: Path, env: dict[str, str], configmap: str, identity: str,
                 *args: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.dir = workdir / "ring"
        self.log = workdir / "agent.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller", "agent", "--configmap", configmap, "--dir",
             str(self.dir), "--identity", identity, *args],
            cwd=REPO, env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


BASE = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
scrape_configs:
  - job_name: {job}
    consul_sd_configs:
      - server: '{consul}'
        services: [{service}]
        refresh_interval: 1s
"""


@dataclass
class Scraper:
    """One sharded Prometheus: its server, its agent, its Consul registration."""

    name: str
    prometheus: PrometheusServer
    agent: AgentProcess | None = None


class ScraperFleet:
    """``count`` Prometheus servers, each a member of ``scraper_service`` in Consul (an HTTP
    check on its /-/ready every ``check_interval``) with a ring agent following ``configmap``."""

    def __init__(self, assets: Path, workdir: Path, client: consul.Consul, consul_addr: str,
                 scraper_service: str, target_service: str, configmap: str, env: dict[str, str],
                 job: str = "targets", check_interval: str = "1s", scrape_interval: str = "1s",
                 agent_args: tuple[str, ...] = (), prometheus_flags: tuple[str, ...] = ()):
        self.assets, self.workdir, self.client = assets, workdir, client
        self.scraper_service, self.configmap, self.env, self.job = \
            scraper_service, configmap, env, job
        self.check_interval = check_interval
        self.agent_args, self.prometheus_flags = agent_args, prometheus_flags
        self.base = workdir / "base.yml"
        workdir.mkdir(parents=True, exist_ok=True)
        self.base.write_text(BASE.format(interval=scrape_interval, job=job, consul=consul_addr,
                                         service=target_service))
        self.scrapers: list[Scraper] = []

    def add(self, name: str) -> Scraper:
        home = self.workdir / name
        prometheus = PrometheusServer(self.assets, home, home / "prometheus.yml",
                                      flags=self.prometheus_flags)
        scraper = Scraper(name, prometheus)
        self.scrapers.append(scraper)
        self.client.agent.service.register(
            self.scraper_service, service_id=name, address="127.0.0.1", port=prometheus.port,
            check=consul.Check.http(f"{prometheus.url}/-/ready", interval=self.check_interval,
                                    timeout="1s"))
        self.start_agent(scraper)
        return scraper

    def start_agent(self, scraper: Scraper) -> None:
        prometheus = scraper.prometheus
        scraper.agent = AgentProcess(
            self.workdir / scraper.name, self.env, self.configmap, scraper.name,
            "--address", "127.0.0.1", "--port", str(prometheus.port),
            "--prometheus-base", str(self.base), "--prometheus-config", str(prometheus.config),
            "--prometheus-job", self.job, "--promtool", str(self.assets / "promtool"),
            "--reload-url", f"{prometheus.url}/-/reload", *self.agent_args)

    def active(self) -> dict[str, set[str] | None]:
        """Per running scraper, the targets it scrapes."""
        return {s.name: s.prometheus.active_targets(self.job) for s in self.scrapers
                if s.prometheus.process is not None and s.prometheus.process.running()}

    def loads_settled(self, names: set[str]) -> bool:
        """Whether each of the scrapers ``names`` counts in its load exactly the targets it
        scrapes: each scraped at least once, none it gave up still counted."""
        for scraper in self.scrapers:
            if scraper.name in names:
                active = scraper.prometheus.active_targets(self.job)
                if active is None or scraper.prometheus.scraped_instances() != active:
                    return False
        return True

    def scraped_by(self, targets: list[str]) -> dict[str, list[str]] | None:
        """Each of ``targets`` -> the running scrapers that scrape it (an empty list: none);
        None while a server does not answer."""
        found: dict[str, list[str]] = {target: [] for target in targets}
        for name, active in self.active().items():
            if active is None:
                return None
            for target in active & found.keys():
                found[target].append(name)
        return found

    def stop(self) -> None:
        for scraper in self.scrapers:
            if scraper.agent is not None:
                scraper.agent.stop()
            scraper.prometheus.stop()
            try:
                self.client.agent.service.deregister(scraper.name)
            except consul.ConsulException:
                pass
