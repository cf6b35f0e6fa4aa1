"""Command-line access to the history: queue, history, backup, doctor, export/import, and --data-dir."""

from __future__ import annotations

import argparse


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="history folder (database and files); default $KELP_DATA_DIR or "
                        "~/.local/share/kelp")


def run_queue(args: argparse.Namespace) -> int:
    from core.store import Store
    from core.store import queue as job_queue
    from core.store.jobs import recover_jobs, run_next_job

    with Store.open(args.data_dir) as store:
        recovered = recover_jobs(store)
        for status, ids in recovered.items():
            if ids:
                print(f"recovered: jobs {ids} left running by a stopped process are now {status}")
        if args.action == "list":
            with store.db.session() as session:
                jobs = job_queue.queued_jobs(session)
                for job in jobs:
                    place = job_queue.queue_place(session, job.id)
                    where = "running" if place == 0 else f"#{place}"
                    print(f"{job.id:>6}  {where:<8}  {job.progress:4.0%}  {job.model}  {job.prompt[:60]!r}")
                if not jobs:
                    print("the queue is empty")
            return 0
        if args.action == "run":
            from core.pipeline import Engine

            engine, count = Engine(device=args.device), 0
            while (outcome := run_next_job(store, engine)) is not None:
                count += 1
                print(f"job {outcome.generation_id}: {outcome.status} {outcome.error}".rstrip())
            print(f"ran {count} job(s); the queue is empty")
            return 0
        if args.id is None:
            raise ValueError(f"`queue {args.action}` needs a job id")
        if args.action == "cancel":
            status = store.db.write(lambda s: job_queue.request_cancel(s, args.id))
            print(f"job {args.id}: {'cancel requested' if status == 'running' else status}")
        elif args.action == "requeue":
            store.db.write(lambda s: job_queue.requeue(s, args.id))
            print(f"job {args.id} queued again")
    return 0


def add_store_commands(sub) -> None:
    queue = sub.add_parser("queue", help="list, run, cancel or re-queue generation jobs")
    queue.add_argument("action", choices=["list", "run", "cancel", "requeue"])
    queue.add_argument("id", nargs="?", type=int, help="job id (cancel, requeue)")
    queue.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (run)")
    add_data_dir_argument(queue)
    queue.set_defaults(handler=run_queue)
    add_history_commands(sub)


def run_history(args: argparse.Namespace) -> int:
    import json

    from core.store import Store
    from core.store.history import list_generations

    with Store.open(args.data_dir) as store, store.db.read() as session:
        page = list_generations(
            session, text=args.search, model=args.model, status=tuple(args.status) if args.status else None,
            tag=args.tag, favourite=True if args.favourites else None, min_rating=args.min_rating,
            page=args.page, page_size=args.page_size,
        )
        if args.json:
            items = [{"id": g.id, "created_at": g.created_at.isoformat(), "status": g.status, "prompt": g.prompt,
                      "model": g.model, "seed": g.seed, "request": g.request,
                      "video": str(store.asset_path(g.video)) if g.video else None,
                      "tags": [t.name for t in g.tags], "favourite": g.favourite, "rating": g.rating}
                     for g in page.items]
            print(json.dumps({"total": page.total, "page": page.page, "pages": page.pages, "items": items}, indent=2))
            return 0
        for g in page.items:
            video = store.asset_path(g.video) if g.video else "-"
            print(f"{g.id:>6}  {g.created_at:%Y-%m-%d %H:%M}  {g.status:<11}  seed {g.seed!s:<10}  "
                  f"{g.prompt[:50]!r}  {video}")
        print(f"page {page.page} of {page.pages} ({page.total} generations)")
    return 0


def run_backup(args: argparse.Namespace) -> int:
    from core.store import Store
    from core.store.maintenance import backup

    with Store.open(args.data_dir) as store:
        paths = backup(store, args.destination, include_files=not args.no_files)
    print(f"database: {paths.database}" + (f"\nfiles: {paths.files}" if paths.files else ""))
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    from core.store import Store
    from core.store.database import integrity_check
    from core.store.jobs import recover_jobs
    from core.store.maintenance import clean_orphans, disk_usage, find_orphans

    with Store.open(args.data_dir) as store:
        integrity = integrity_check(store.db.engine)
        recovered = recover_jobs(store)
        report = find_orphans(store)
        usage = disk_usage(store)
        print(f"data folder   {store.data_dir.root}")
        print(f"database      integrity {integrity}")
        print(f"recovered     {recovered['interrupted']} interrupted, {recovered['done']} finished")
        for name in ("untracked_files", "incomplete_files", "stale_staging", "missing_files", "unreferenced_assets",
                     "done_without_video"):
            found = getattr(report, name)
            print(f"{name.replace('_', ' '):<22}{len(found)}")
        print(f"disk          {usage.total / 1e6:.1f} MB in all: files {usage.files / 1e6:.1f} MB, database "
              f"{usage.database / 1e6:.1f} MB, backups {usage.backups / 1e6:.1f} MB")
        if args.clean:
            removed = clean_orphans(store, report)
            print(f"removed {len(removed)} leftover file(s)")
    return 0 if integrity == "ok" and report.healthy else 1


def run_project_exchange(args: argparse.Namespace) -> int:
    from core.store import Store
    from core.store.exchange import export_project, import_project

    with Store.open(args.data_dir) as store:
        if args.command == "export":
            print(f"wrote {export_project(store, args.project_id, args.zip)}")
        else:
            print(f"imported as project {import_project(store, args.zip)}")
    return 0


def add_history_commands(sub) -> None:
    history = sub.add_parser("history", help="list and search past generations")
    history.add_argument("--search", help="words in the prompt or note")
    history.add_argument("--model", help="only this model")
    history.add_argument("--status", action="append", help="queued, running, done, failed, cancelled, interrupted")
    history.add_argument("--tag", help="only generations with this tag")
    history.add_argument("--favourites", action="store_true", help="only favourites")
    history.add_argument("--min-rating", type=int, help="only rated at least this (1-5)")
    history.add_argument("--page", type=int, default=1)
    history.add_argument("--page-size", type=int, default=20)
    history.add_argument("--json", action="store_true", help="print JSON (full requests, file paths)")
    history.set_defaults(handler=run_history)
    backup = sub.add_parser("backup", help="copy the history database (and its files) into backups/")
    backup.add_argument("--destination", help="folder for the backup (default: <data-dir>/backups)")
    backup.add_argument("--no-files", action="store_true", help="only the database, not the media files")
    backup.set_defaults(handler=run_backup)
    doctor = sub.add_parser("doctor", help="check the history: integrity, interrupted jobs, orphaned files, disk use")
    doctor.add_argument("--clean", action="store_true", help="remove leftover files that nothing refers to")
    doctor.set_defaults(handler=run_doctor)
    export = sub.add_parser("export", help="write a project (media + JSON) to a zip")
    export.add_argument("project_id", type=int)
    export.add_argument("zip")
    export.set_defaults(handler=run_project_exchange)
    imported = sub.add_parser("import", help="add a project from a zip written by `export`")
    imported.add_argument("zip")
    imported.set_defaults(handler=run_project_exchange)
    for command in (history, backup, doctor, export, imported):
        add_data_dir_argument(command)
