"""Kelp's history queries on this machine: listing pages, word search, filters and tags over 10,000 generations.

Run from the repo root: `python -m bench.store [--rows 10000]`. Builds a throw-away store with realistic rows
(prompts from a word list, statuses, models, tags, ratings, dates over a year), times each query warm (median of
repeated runs, each in its own session as the UI makes them), prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy
from sqlalchemy import insert

from core.store import Store
from core.store.history import list_generations
from core.store.schema import Generation, GenerationTag, Project, Tag

GOAL_MS = 50.0
END = datetime(2026, 11, 1)  # rows are spread over the year before this
SUBJECTS = ("red fox", "snowy owl", "blue whale", "old lighthouse", "city street", "mountain lake", "robot",
            "dancer", "forest path", "sailing boat", "koi pond", "desert caravan", "steam train", "jellyfish")
ADJECTIVES = ("misty", "golden", "quiet", "stormy", "neon", "ancient", "tiny", "vast", "frozen", "glowing")
ACTIONS = ("moving slowly", "at dawn", "in the rain", "under the stars", "at sunset", "in slow motion",
           "seen from above", "close-up", "walking", "turning around", "in the wind", "at night")
STYLES = ("cinematic", "35mm film", "watercolour", "anime", "photorealistic", "soft light", "shallow depth of field",
          "long shot", "handheld camera", "pastel colours")
RARE_WORD = "axolotl"  # in about 0.1% of prompts
COMMON_WORD = "cinematic"  # in about 35%
MODELS = (("kelp-small", 6), ("kelp-base", 3), ("random:small", 1))
STATUSES = (("done", 86), ("failed", 6), ("cancelled", 4), ("interrupted", 2), ("queued", 1), ("running", 1))
TAGS = ("favourite-look", "portrait", "landscape", "animals", "night", "test", "storyboard", "client", "wip",
        "reference", "loop", "keep")
TAG_FILTER = "portrait"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="generations in the store")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per query (after 3 warm-up runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench/results/store-cpu.json")
    return parser.parse_args(argv)


def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), "-m", "bench.store", *sys.argv[1:]]),
        "git_commit": git.stdout.strip() if git.returncode == 0 else None,
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                    platform.processor() or None),
        "cores": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "sqlalchemy": sqlalchemy.__version__,
        "platform": platform.platform(),
    }


def weighted(rng: random.Random, choices) -> str:
    names, weights = zip(*choices)
    return rng.choices(names, weights)[0]


def random_prompt(rng: random.Random) -> str:
    subject = RARE_WORD if rng.random() < 0.001 else rng.choice(SUBJECTS)
    words = [f"a {rng.choice(ADJECTIVES)} {subject} {rng.choice(ACTIONS)}"]
    words += rng.sample(STYLES, rng.randint(0, 3))
    if COMMON_WORD not in words and rng.random() < 0.25:
        words.append(COMMON_WORD)
    return ", ".join(words)


def fill_store(store: Store, rows: int, seed: int) -> float:
    """Insert `rows` generations (with projects and tags) in bulk; returns the seconds it took."""
    rng = random.Random(seed)
    started = time.perf_counter()
    generations, tagged = [], []
    for generation_id in range(1, rows + 1):
        prompt, status = random_prompt(rng), weighted(rng, STATUSES)
        created = END - timedelta(seconds=rng.uniform(0, 365 * 24 * 3600))
        generations.append(dict(
            id=generation_id, prompt=prompt, request={"prompt": prompt, "steps": 20}, model=weighted(rng, MODELS),
            status=status, seed=rng.randrange(2**31), created_at=created, updated_at=created,
            project_id=rng.randint(1, 20) if rng.random() < 0.6 else None,
            rating=rng.randint(1, 5) if rng.random() < 0.4 else None, favourite=rng.random() < 0.08,
            note="client liked it" if rng.random() < 0.03 else "", queue_position=float(generation_id),
            deleted_at=created + timedelta(days=1) if rng.random() < 0.02 else None,
        ))
        for tag_id in rng.sample(range(1, len(TAGS) + 1), rng.choice((0, 0, 1, 1, 2, 3))):
            tagged.append(dict(generation_id=generation_id, tag_id=tag_id))
    with store.db.session() as session:
        session.execute(insert(Project), [dict(id=i, name=f"project {i}", description="") for i in range(1, 21)])
        session.execute(insert(Tag), [dict(id=i, name=name) for i, name in enumerate(TAGS, start=1)])
        session.execute(insert(Generation), generations)
        session.execute(insert(GenerationTag), tagged)
    with store.db.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")  # what `PRAGMA optimize` does for a long-used database
        connection.commit()
    return time.perf_counter() - started


def queries(middle_page: int) -> dict[str, dict]:
    """The timed queries: what the history page asks for (page_size 50, newest first unless said)."""
    return {
        "page 1": dict(page=1),
        f"middle page ({middle_page})": dict(page=middle_page),
        f"search common word ({COMMON_WORD!r})": dict(text=COMMON_WORD),
        f"search rare word ({RARE_WORD!r})": dict(text=RARE_WORD),
        "model + status + min_rating": dict(model="kelp-base", status="done", min_rating=4),
        f"tag ({TAG_FILTER!r})": dict(tag=TAG_FILTER),
    }


def time_query(store: Store, filters: dict, repeats: int) -> dict:
    def run():
        with store.db.session() as session:
            return list_generations(session, page_size=50, **filters)

    for _ in range(3):
        page = run()
    times_ms = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times_ms.append((time.perf_counter() - started) * 1000)
    return {"filters": filters, "total": page.total, "items": len(page.items), "median_ms": statistics.median(times_ms),
            "min_ms": min(times_ms), "max_ms": max(times_ms), "goal_ms": GOAL_MS,
            "meets_goal": statistics.median(times_ms) < GOAL_MS}


def table(results: dict) -> str:
    lines = ["| query | matches | median ms | min ms | max ms | goal |", "|---|---:|---:|---:|---:|---|"]
    for name, r in results["queries"].items():
        verdict = f"< {GOAL_MS:.0f} ms " + ("yes" if r["meets_goal"] else "NO")
        lines.append(f"| {name} | {r['total']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} | "
                     f"{verdict} |")
    return "\n".join(lines)


def run_benchmark(rows: int, repeats: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as folder, Store.open(Path(folder) / "data") as store:
        build_s = fill_store(store, rows, seed)
        with store.db.session() as session:
            pages = list_generations(session, page_size=50).pages
        results = {name: time_query(store, filters, repeats) for name, filters in queries(max(1, pages // 2)).items()}
        database_bytes = store.data_dir.database.stat().st_size
    return {"settings": {"rows": rows, "repeats": repeats, "warmup": 3, "page_size": 50, "seed": seed},
            "build_s": build_s, "database_bytes": database_bytes, "queries": results}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.rows < 1 or args.repeats < 1:
        raise SystemExit(f"`--rows` and `--repeats` must be at least 1 but are {args.rows} and {args.repeats}")
    print(f"building a store of {args.rows} generations ...")
    results = {**machine_info(), **run_benchmark(args.rows, args.repeats, args.seed)}
    print(f"built in {results['build_s']:.1f} s; {results['settings']['repeats']} warm runs per query\n")
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
