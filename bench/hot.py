"""Top functions of a py-spy ``--format raw`` profile (collapsed stacks: "frame;frame;... count").

    python bench/hot.py profile.txt [N]

"self": samples where the function was running; "total": samples where it was on the stack.
"""

from __future__ import annotations

import sys
from collections import Counter


def main(path: str, limit: int = 30) -> None:
    own: Counter = Counter()
    total: Counter = Counter()
    samples = 0
    for line in open(path, encoding="utf-8"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"{samples} samples")
    for title, counter in (("self", own), ("total", total)):
        print(f"\n## {title}")
        for frame, n in counter.most_common(limit):
            print(f"{100 * n / samples:6.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:3]))
