"""The README and docs/ say only what is true: the make targets and command lines they show exist
and parse, the condition types and reasons they list are the operator's, ring.json's fields are
the ones it writes, and every measured figure comes from a file in bench/results."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import build_parser
from controller.core import ringfile
from controller.core.decision import Reason
from controller.core.ring import Member, RingSpec, plan

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((REPO / "docs").glob("*.md"))}
EVERYTHING = "\n".join([README, *DOCS.values()])


def section(text: str, title: str) -> str:
    """The section under a ``## title`` heading, up to the next heading of that level."""
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


# ---- commands ------------------------------------------------------------------------------------

def make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, flags=re.M))


def test_every_make_target_the_docs_name_exists():
    named = set(re.findall(r"`make ([a-z][a-z0-9-]*)", EVERYTHING)) | \
        set(re.findall(r"^make ([a-z][a-z0-9-]*)", EVERYTHING, flags=re.M))
    assert named, "the docs name no make target: the pattern is wrong"
    assert named - make_targets() == set()


def command_lines() -> Iterator[str]:
    """Every ``python -m controller …`` the docs show, inline or in a code block."""
    for match in re.finditer(r"python -m controller((?: [^`\n\\]+)*(?:\\\n[^`\n]*)*)",
                             EVERYTHING):
        text = match.group(1).replace("\\\n", " ")
        # [optional parts] are shown as such: take the line without them.
        yield re.sub(r"\[[^\]]*\]", "", text).split("#")[0].strip()


def test_every_command_line_the_docs_show_parses():
    parser = build_parser()
    lines = [line for line in command_lines() if line and not line.startswith("agent")]
    assert len(lines) >= 4
    for line in lines:
        words = [w for w in shlex.split(line) if w not in ("…", "...")]
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"`python -m controller {line}` does not parse")


def our_options() -> set[str]:
    found: set[str] = set()

    def walk(parser) -> None:
        for action in parser._actions:
            found.update(o for o in action.option_strings if o.startswith("--"))
            choices = getattr(action, "choices", None)
            if isinstance(choices, dict):  # sub-commands
                for sub in choices.values():
                    walk(sub)
    walk(build_parser())
    return found


# Options of other tools that the docs quote (kubectl, Prometheus, etcdctl, make, helm).
FOREIGN = {"--for", "--scrape.discovery-reload-interval", "--web.enable-lifecycle", "--lease",
           "--dry-run", "--timeout", "--type", "--as", "--all-namespaces", "--namespace",
           "--kubeconfig", "--server-side", "--config.file", "--ignore-not-found",
           "--require-hashes", "--no-index", "--watch", "--create-namespace", "--set"}


def test_every_option_the_docs_quote_exists():
    quoted = set(re.findall(r"`[^`]*?(--[a-z][a-z0-9.-]*)", EVERYTHING))
    quoted |= {option for line in command_lines() for option in
               re.findall(r"(--[a-z][a-z0-9.-]*)", line)}
    assert "--prometheus-base" in quoted  # the pattern finds the agent's options
    assert quoted - our_options() - FOREIGN == set()


# ---- conditions, reasons, ring.json --------------------------------------------------------------

CONDITION_TYPES = ("Ready", "ConsulReachable", "SourceReachable", "Stable", "Degraded",
                   "Converged", "Reconciling", "Stalled")
READY_REASONS = ("Published", "Pending", "Suspended", "ConsulUnreachable", "SourceUnreachable")


def test_every_condition_and_reason_is_documented():
    from controller.core import acks, status
    from controller.sources.consul import query
    sources = (Path(status.__file__).read_text(), Path(acks.__file__).read_text(),
               Path(query.__file__).read_text())  # a source's own names (the deprecated ones)
    for name in (*CONDITION_TYPES, *READY_REASONS):
        assert any(f'"{name}"' in source for source in sources), f"{name} is not the code's"
    converged = set(re.findall(r'Condition\("Converged", [^,]+, "([A-Za-z]+)"', sources[1]))
    assert converged >= {"Applied", "NoAgents", "Lagging"}
    reference = DOCS["reference.md"]
    for name in (*CONDITION_TYPES, *READY_REASONS, *(str(r) for r in Reason), *converged):
        assert f"`{name}`" in reference, f"docs/reference.md does not list `{name}`"


def test_every_ring_json_field_is_documented():
    assignment = plan([Member("a", zone="z1"), Member("b", 2, "z2"), Member("c")],
                      RingSpec(8, 2))
    ring = ringfile.RingFile(assignment, version=3, source_index=7,
                             shard_ring={"namespace": "n", "name": "r"},
                             service={"name": "svc"}, draining=("d",),
                             endpoints={"a": ringfile.Endpoint("10.0.0.1", 9100),
                                        "d": ringfile.Endpoint("10.0.0.4", 9100)},
                             handover={"c": (1,)}, member_load={"a": 3.0, "b": 5.5, "c": 1.0})
    document = json.loads(ringfile.render(ring))
    row = next(line for line in README.splitlines() if line.startswith("| `ring.json` |"))
    fields = set(document) | {key for member in document["members"] for key in member}
    assert len(fields) > 10
    missing = sorted(field for field in fields if not re.search(rf"\b{field}\b", row))
    assert missing == [], f"README's ring.json row omits {missing}"
    # ... and names no field that does not exist: the list after "ring:", without the asides.
    listed = re.sub(r"\([^()]*\)", "", row.split("ring:", 1)[1].rsplit("|", 1)[0])
    named = {item.split()[0] for item in listed.split(",") if item.strip()}
    assert named - fields == set()


# ---- figures -------------------------------------------------------------------------------------

FIGURE = re.compile(r"(?<![\w.])(\d+(?:[.,]\d+)*)\s?(ms|MB|GB)\b")


def measured_values() -> list[float]:
    values: list[float] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            # Raw measurements (kept for the pictures) would explain almost any figure.
            for key, value in node.items():
                if key not in ("samples_ms", "per_event"):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            values.append(float(node))
    for path in sorted((REPO / "bench" / "results").glob("*.json")):
        walk(json.loads(path.read_text()))
    return values


def explained(figure: str, unit: str, values: list[float]) -> bool:
    """A figure is explained by a measured value that rounds to it (in the same unit, or one
    recorded in seconds or bytes)."""
    number = float(figure.replace(",", ""))
    decimals = len(figure.split(".")[1]) if "." in figure else 0
    scales = {"ms": (1, 1000), "MB": (1, 1 / 1e6, 1 / 2**20), "GB": (1, 1 / 1e9, 1 / 1024)}[unit]
    return any(round(value * scale, decimals) == number or
               (decimals == 0 and round(value * scale) == number)
               for value in values for scale in scales)


def documented_figures() -> Iterator[tuple[str, str, str]]:
    """(figure, unit, sentence) for every measured figure: in docs/benchmarks.md, and in every
    paragraph of the README and docs/ that cites a benchmark (`make bench…`)."""
    paragraphs = EVERYTHING.split("\n\n")
    cited = [p for p in paragraphs if "make bench" in p]
    for text in [DOCS["benchmarks.md"], *cited]:
        for match in FIGURE.finditer(text):
            yield match.group(1), match.group(2), text[max(0, match.start() - 60):match.end()]


def test_every_measured_figure_comes_from_bench_results():
    values = measured_values()
    figures = list(documented_figures())
    assert len(figures) > 20
    unexplained = [(f"{figure} {unit}", context) for figure, unit, context in figures
                   if not explained(figure, unit, values)]
    assert unexplained == []


def test_the_member_key_rule_the_readme_gives_for_shells_is_the_operators():
    import subprocess

    from controller.core.ringfile import member_keys
    rule = next(line for line in README.splitlines() if "md5sum" in line and "key=" in line)
    for member in ("scraper-1", "shardring-dev/scraper-1", "10.0.0.7:9100", "a b/c", "x" * 205):
        shell = subprocess.run(["bash", "-c", f'{rule}\nprintf %s "$key"'],
                               env={"ID": member, "PATH": "/usr/bin:/bin"},
                               capture_output=True, text=True, check=True).stdout
        assert shell == member_keys([member])[member], member
