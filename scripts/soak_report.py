#!/usr/bin/env python3
"""Reads the CSV scripts/soak.sh wrote (t_s,rss_kb,open_files,threads) and compares the first
minute with the last: median and maximum of each. Verdict "no growth" when, in the last minute,
  RSS median <= first-minute RSS max + max(8 MiB, 10 %)   (allocator and page-cache noise),
  open files and threads: last-minute median <= first-minute max (a transient socket is not a leak).
Also prints the least-squares RSS slope over the run after the first minute (KiB per minute).
Exit status 0 on no growth, 1 otherwise."""
import csv
import statistics
import sys


def main(path: str) -> int:
    rows = [r for r in csv.DictReader(open(path))]
    if len(rows) < 10:
        print(f"soak_report: only {len(rows)} samples in {path}")
        return 1
    t = [float(r["t_s"]) for r in rows]
    cols = {k: [int(r[k]) for r in rows] for k in ("rss_kb", "open_files", "threads")}
    end = t[-1]
    window = 60.0 if end >= 180 else end / 3
    first = [i for i, x in enumerate(t) if x < window]
    last = [i for i, x in enumerate(t) if x >= end - window]
    print(f"soak: {len(rows)} samples over {end:.0f} s; first and last {window:.0f} s compared")
    ok = True
    for k, v in cols.items():
        f = [v[i] for i in first]
        l = [v[i] for i in last]
        print(f"  {k:10s} first: median {statistics.median(f):>9.0f} max {max(f):>9d} | "
              f"last: median {statistics.median(l):>9.0f} max {max(l):>9d} | overall max {max(v)}")
        if k == "rss_kb":
            grew = statistics.median(l) > max(f) + max(8 * 1024, max(f) * 0.10)
        else:
            grew = statistics.median(l) > max(f)  # a transient extra fd is not growth
        if grew:
            print(f"  GROWTH in {k}")
            ok = False
    after = [i for i, x in enumerate(t) if x >= window]
    if len(after) > 2:
        xs = [t[i] / 60 for i in after]
        ys = [cols["rss_kb"][i] for i in after]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        den = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0
        print(f"  rss slope after the first {window:.0f} s: {slope:+.0f} KiB/min")
    print("soak: no growth" if ok else "soak: GROWTH (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "samples.csv"))
