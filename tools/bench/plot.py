"""Draws target/bench/accuracy.png from the accuracy parts of `make bench`.

usage: plot.py DIR   (reads DIR/accuracy-spread.json and DIR/accuracy-naive.json)
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def per_second(times):
    """Sends per 1-second bin, as (bin starts, counts)."""
    if not times:
        return [], []
    end = int(math.ceil(max(times))) + 1
    counts = [0] * end
    for t in times:
        if t >= 0:
            counts[int(t)] += 1
    return list(range(end)), counts


def main():
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
    # Drawn in this order, so the design's own line ends up on top.
    runs = [
        ("naive baseline", load(out_dir / "accuracy-naive.json"), "tab:orange"),
        ("spread, no in-process wait", load(out_dir / "accuracy-spread-nowait.json"), "tab:green"),
        ("spread (this design)", load(out_dir / "accuracy-spread.json"), "tab:blue"),
    ]
    runs = [r for r in runs if r[1]]
    if not runs:
        print("plot.py: no accuracy parts to plot", file=sys.stderr)
        return 1
    rate = runs[0][1]["rate_per_minute"]
    burst = runs[0][1]["burst"]
    per_s = rate / 60.0

    fig, axes = plt.subplots(3, 1, figsize=(11, 12))
    ax1, ax2, ax3 = axes

    for label, run, color in runs:
        solo = run["timelines"]["solo"]
        xs, ys = per_second(solo)
        ax1.step(xs, ys, where="post", color=color, linewidth=1.6, label=f"{label}: {len(solo)} sends")
    ax1.axhline(per_s, color="red", linestyle="--", label=f"limit: {per_s:g}/s sustained (burst {burst:g})")
    ax1.set_title("Single account, 1,000-message backlog: sends per second at the stub")
    ax1.set_xlabel("seconds since the first message was enqueued")
    ax1.set_ylabel("sends in that second")
    ax1.legend(loc="upper right")
    ax1.grid(alpha=0.3)

    longest = 0.0
    for label, run, color in runs:
        solo = run["timelines"]["solo"]
        if not solo:
            continue
        first = solo[0]
        rel = [t - first for t in solo]
        longest = max(longest, rel[-1])
        ax2.step(rel, range(1, len(rel) + 1), where="post", color=color,
                 label=f"{label}: budget used {run['solo']['budget_used'] * 100:.1f} %")
    xs = [0, longest]
    ax2.plot(xs, [burst + per_s * x for x in xs], color="red", linestyle="--",
             label="allowed: burst + rate × t / 60")
    ax2.set_title("Single account: cumulative sends against the arrival curve")
    ax2.set_xlabel("seconds since the account's first send")
    ax2.set_ylabel("messages sent")
    ax2.legend(loc="upper left")
    ax2.grid(alpha=0.3)

    for label, run, color in runs:
        spread = run["timelines"]["spread"]
        times = [t for ts in spread.values() for t in ts]
        xs, ys = per_second(times)
        peak = max((len(ts) for ts in spread.values()), default=0)
        ax3.step(xs, ys, where="post", color=color,
                 label=f"{label}: {len(spread)} accounts, ≤ {peak} messages each")
    ax3.set_title("1,000 messages over 100 accounts (10 each: within the burst): "
                  "sends per second, all 100 together")
    ax3.set_xlabel("seconds since the first message was enqueued")
    ax3.set_ylabel("sends in that second")
    ax3.legend(loc="upper right")
    ax3.grid(alpha=0.3)

    fig.suptitle(f"Delivery accuracy under backlog (rate {rate:g}/min, burst {burst:g})")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(out_dir / "accuracy.png", dpi=100)
    print(f"plot.py: wrote {out_dir / 'accuracy.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
