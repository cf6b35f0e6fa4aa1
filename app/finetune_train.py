"""The trainer process of a studio fine-tune: `python -m app.finetune_train --recipe R [--output-dir D]`.

It is `python -m training.train` at a lower CPU priority than the studio, and it stops when the studio that
started it is gone (so a killed studio leaves no trainer behind).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

PARENT_POLL_S = 1.0


def watch_parent(parent_pid: int) -> None:
    """Exit this process once `parent_pid` is no longer its parent (the studio died and it was re-parented)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(3)  # no clean-up to do: the studio marks the run interrupted at its next start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m app.finetune_train")
    p.add_argument("--recipe", required=True)
    p.add_argument("--output-dir", help="where checkpoints, metrics and the LoRA go (default: the recipe's)")
    p.add_argument("--parent-pid", type=int, help="stop when this process (the studio) is gone")
    p.add_argument("--nice", type=int, default=5, help="lower CPU priority by this much, so the studio stays quick")
    args = p.parse_args(argv)
    if args.parent_pid:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), name="parent-watch", daemon=True).start()
    if args.nice and hasattr(os, "nice"):
        os.nice(args.nice)

    from training.train import main as train_main

    return train_main(["--recipe", args.recipe] + (["--output-dir", args.output_dir] if args.output_dir else []))


if __name__ == "__main__":
    sys.exit(main())
