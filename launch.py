"""Kelp's entry point: `python launch.py` starts the studio in the browser; `python launch.py generate ...` makes
a clip from the command line; `history`, `queue`, `doctor`, `backup`, `export`/`import` work on the history.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli_performance import add_performance_arguments, performance_fields
from app.cli_store import add_data_dir_argument, add_store_commands


def _seconds_to_frames(seconds: float, fps: float) -> int:
    """Nearest valid frame count (1 + 4k, at least 1) for a duration."""
    return max(1, 4 * round(seconds * fps / 4) + 1)


def _read_shots(path: str):
    from core.request import ShotSpec

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"`--shots` must be a readable JSON file, got {path!r} ({err})") from err
    shots = data.get("shots") if isinstance(data, dict) else data
    subject = data.get("subject", "") if isinstance(data, dict) else ""
    if not isinstance(shots, list) or not all(isinstance(s, dict) for s in shots):
        raise ValueError(f"`--shots` {path!r} must hold a list of {{\"prompt\", \"num_frames\"}} objects "
                         f"(or {{\"subject\": ..., \"shots\": [...]}})")
    try:
        return subject, tuple(ShotSpec(prompt=s["prompt"], num_frames=s["num_frames"]) for s in shots)
    except KeyError as err:
        raise ValueError(f"`--shots` {path!r}: every shot needs {err}") from err


def _parse_lora(text: str):
    """`PATH` or `PATH:STRENGTH` (the last colon splits, so Windows drive letters survive)."""
    from core.request import LoraSpec

    path, sep, strength = text.rpartition(":")
    if sep and path and strength.replace(".", "", 1).isdigit():
        return LoraSpec(path=path, strength=float(strength))
    return LoraSpec(path=text)


def build_request(args: argparse.Namespace):
    from core.request import GenerationRequest

    prompt, shots = args.prompt or "", ()
    if args.shots:
        subject, shots = _read_shots(args.shots)
        prompt = prompt or subject
    num_frames = args.frames
    if args.seconds is not None:
        if args.fps is None:
            raise ValueError("`--seconds` needs `--fps` so that it can be turned into frames")
        num_frames = _seconds_to_frames(args.seconds, args.fps)
    return GenerationRequest(
        prompt=prompt, negative_prompt=args.negative_prompt, model=args.model, width=args.width,
        height=args.height, num_frames=num_frames, fps=args.fps, steps=args.steps,
        guidance_scale=args.guidance, sampler=args.sampler, shift=args.shift, seed=args.seed,
        image=args.image, last_image=args.last_image, extend_video=args.extend,
        extend_context_frames=args.context_frames, shots=shots,
        loras=tuple(_parse_lora(text) for text in args.lora), **performance_fields(args),
    )


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from core.pipeline import Engine
    from core.store import Store
    from core.store.jobs import enqueue_generation, recover_jobs, run_job_now

    request = build_request(args)
    engine = Engine(device=args.device)
    engine.validate(request)  # bad input is refused before anything is recorded
    bars: dict[str, tqdm] = {}

    def on_progress(progress) -> None:
        if progress.stage not in ("sampling", "decoding"):
            return
        bar = bars.get(progress.stage)
        if bar is None:
            for old in bars.values():
                old.close()
            bar = bars[progress.stage] = tqdm(total=progress.total, desc=progress.stage, unit="step")
        bar.update(progress.step - bar.n)

    with Store.open(args.data_dir) as store:
        recover_jobs(store)
        job_id = enqueue_generation(store, request, source="cli")
        outcome = run_job_now(store, engine, job_id, on_progress=on_progress)
        for bar in bars.values():
            bar.close()
        if outcome.status != "done":
            print(f"error: generation {job_id} {outcome.status}: {outcome.error}", file=sys.stderr)
            return 1
        written = export_generation(store, job_id, args.out, gif=args.gif) if args.out else [outcome.video_path]
    print(f"generation {job_id} done (seed {outcome.seed}); wrote " + ", ".join(str(path) for path in written))
    return 0


def export_generation(store, generation_id: int, out: str, *, gif: bool = False) -> list[Path]:
    """Copy a finished generation's video to `out`, with its JSON sidecar (and a GIF) beside it."""
    import os
    import shutil

    from core.store.schema import Generation
    from core.video_io import read_video_frames, write_gif, write_sidecar

    with store.db.session() as session:
        job = session.get(Generation, generation_id)
        source, metadata = store.asset_path(job.video), dict(job.result)
    out_path = Path(out)
    if out_path.suffix.lower() != ".mp4":
        raise ValueError(f"`--out` must be an .mp4 path, got {out!r}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, out_path)
    written = [out_path, write_sidecar(out_path, metadata)]
    if gif:
        frames, fps = read_video_frames(out_path)
        written.append(write_gif(frames, out_path.with_suffix(".gif"), fps))
    return written


def run_models(args: argparse.Namespace) -> int:
    from core.model_loader import list_models

    for name in list_models():
        print(name)
    return 0


def default_studio_model() -> str:
    """The bundled model when it is installed, else an untrained stand-in (the studio says so)."""
    from core.model_loader import DEFAULT_MODEL, list_models

    return DEFAULT_MODEL if DEFAULT_MODEL in list_models() else "random:small"


def run_studio(args: argparse.Namespace) -> int:
    from app.auth import studio_auth
    from app.service import StudioService
    from app.studio import build_studio

    credentials, generated = studio_auth(args.auth, args.share)
    model = args.model or default_studio_model()
    service = StudioService.open(args.data_dir, device=args.device, model=model)
    if service.recovered["interrupted"]:
        print(f"jobs {service.recovered['interrupted']} were interrupted by the last shutdown; re-queue them from History")
    if generated:
        print(f"sharing with a generated login: user {credentials[0][0]!r}, password {generated!r}")
    demo = build_studio(service)
    try:
        demo.queue(default_concurrency_limit=4).launch(
            server_name=args.host, server_port=args.port, share=args.share, auth=credentials or None,
            inbrowser=not args.no_browser, allowed_paths=[str(service.store.data_dir.files), str(service.store.data_dir.training)], show_error=True,
            prevent_thread_lock=False,
        )
    finally:
        service.close()
    return 0


def add_studio_arguments(root: argparse.ArgumentParser) -> None:
    root.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: the whole network)")
    root.add_argument("--port", type=int, default=7860)
    root.add_argument("--share", action="store_true", help="a public Gradio link; always behind a login "
                      "(a password is generated and printed when --auth is not given)")
    root.add_argument("--auth", help="user:password, or a file of user:password lines")
    root.add_argument("--model", help="the default model (default: kelp-small when installed)")
    root.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    root.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    add_data_dir_argument(root)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="launch.py", description="Kelp: make video with generative models locally. "
                                   "Without a command it starts the studio.")
    add_studio_arguments(root)
    sub = root.add_subparsers(dest="command")
    gen = sub.add_parser("generate", help="make one clip (T2V, I2V, first+last frame, extend, multi-shot)")
    gen.add_argument("--prompt", help="what to show; with --shots, the subject and style shared by every shot")
    gen.add_argument("--negative-prompt", default="", help="what to steer away from (used with guidance > 1)")
    gen.add_argument("--model", default="kelp-small", help="model name or folder, or random:<preset> (untrained)")
    gen.add_argument("--width", type=int, help="pixels, multiple of 16 (default: the model's)")
    gen.add_argument("--height", type=int, help="pixels, multiple of 16 (default: the model's)")
    length = gen.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, help="frame count, 1 + 4k (e.g. 17)")
    length.add_argument("--seconds", type=float, help="duration; rounded to the nearest 1 + 4k frames (needs --fps)")
    gen.add_argument("--fps", type=float, help="frames per second of the output (default: the model's)")
    gen.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    gen.add_argument("--guidance", type=float, help="classifier-free guidance scale; 1 turns it off")
    gen.add_argument("--sampler", choices=["euler", "heun", "unipc"], help="flow-matching sampler")
    gen.add_argument("--shift", type=float, help="timestep shift (default: scaled with clip size)")
    gen.add_argument("--seed", type=int, help="random seed (default: random, printed and recorded)")
    gen.add_argument("--image", help="first frame (image-to-video); any size, scaled to cover and centre-cropped")
    gen.add_argument("--last-image", help="last frame (with --image: first+last frame)")
    gen.add_argument("--extend", help="a clip to continue; the result holds the clip and its continuation")
    gen.add_argument("--context-frames", type=int, default=5, help="frames of --extend's end to continue from (1 + 4k)")
    gen.add_argument("--shots", help='JSON file: {"subject": "...", "shots": [{"prompt": "...", "num_frames": 17}]}')
    gen.add_argument("--lora", action="append", default=[], metavar="PATH[:STRENGTH]",
                     help="a fine-tuned LoRA (.safetensors), strength 0 to 4 (default 1); repeat for several")
    gen.add_argument("--out", help="also copy the clip to this .mp4 path, with a .json sidecar beside it "
                     "(it is always kept in the history, see --data-dir)")
    gen.add_argument("--gif", action="store_true", help="also write a GIF beside the mp4")
    gen.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    add_performance_arguments(gen)
    add_data_dir_argument(gen)
    gen.set_defaults(handler=run_generate)
    models = sub.add_parser("models", help="list the models Kelp can find")
    models.set_defaults(handler=run_models)
    add_store_commands(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command is None:
        args.handler = run_studio
    try:
        return args.handler(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
