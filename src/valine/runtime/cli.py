"""The ``valine`` command line: serve, inspect runs, print the command registration."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from valine.core.errors import ConfigurationError, NotFound, ValineError
from valine.logs import get_logger
from valine.runtime.config import local_settings

if TYPE_CHECKING:
    from valine.runtime.wiring import Services

log = get_logger("valine.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``valine`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"valine: configuration error: {exc}", file=sys.stderr)
        return 2
    except ValineError as exc:
        print(f"valine: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="valine", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the local service (HTTP + workers)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    serve.set_defaults(func=_serve)

    runs = commands.add_parser("runs", help="read runs from the state store")
    runs_commands = runs.add_subparsers(required=True, metavar="ACTION")
    runs_list = runs_commands.add_parser("list", help="the most recent runs")
    runs_list.add_argument("--repo")
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.set_defaults(func=_runs_list)
    runs_show = runs_commands.add_parser("show", help="one run as JSON")
    runs_show.add_argument("run_id")
    runs_show.set_defaults(func=_runs_show)

    register = commands.add_parser("register-commands", help="the slash commands for Discord")
    register.add_argument(
        "--guild",
        help="only this guild (default: every [discord] guild_ids; globally without any)",
    )
    register.add_argument("--dry-run", action="store_true", help="print the JSON, send nothing")
    register.set_defaults(func=_register_commands)
    audit = commands.add_parser("audit", help="who tried what, allowed or refused")
    audit.add_argument("--run", help="only this run's entries")
    audit.add_argument("--limit", type=int, default=50)
    audit.set_defaults(func=_audit)

    config = commands.add_parser("config", help="the workflow rules file (valine.toml)")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser(
        "check", help="validate a rules file and print the effective rules"
    )
    check.add_argument("file", nargs="?", help="default: VALINE_CONFIG, else ./valine.toml")
    check.set_defaults(func=_config_check)

    doctor = commands.add_parser(
        "doctor", help="check the settings against GitHub and Discord; print each fix"
    )
    doctor.add_argument(
        "--endpoint", help="the public base URL of the service (checks the webhook's URL)"
    )
    doctor.set_defaults(func=_doctor)

    from valine.runtime.simulate import add_parser as add_simulate

    add_simulate(commands)

    demo = commands.add_parser("demo", help="the whole workflow against GitHub/Discord stand-ins")
    demo.set_defaults(func=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from valine.runtime.demo import main as demo_main

    return demo_main()


def _serve(args: argparse.Namespace) -> int:
    from valine.runtime.wiring import Services

    return serve_services(Services(local_settings()), args.host, args.port)


def serve_services(services: Services, host: str, port: int) -> int:
    """``valine serve`` of ``services``: the HTTP endpoints, the workers, the reconcile."""
    from valine import logs
    from valine.queue.worker import WorkerPool
    from valine.runtime.server import GroupCommit, RsgiAdapter, serve

    settings = services.settings
    logs.configure(settings.log_level, settings.secret_values(), log_format=settings.log_format)
    services.policy  # a malformed valine.toml stops start-up, naming the key  # noqa: B018
    services.store  # opens (and if needed creates) the state store now, not on first use  # noqa: B018
    commits = GroupCommit(services.queue)
    adapter = RsgiAdapter(
        services.app(),
        max_in_flight=int(settings.max_body_in_flight),
        body_timeout=float(settings.body_timeout),
        commits=commits,
    )
    pool = WorkerPool(
        services.queue,
        services.job_handlers(),
        threads=int(settings.workers),
        visibility_timeout=float(settings.job_lease),
        on_dead_letter=services.on_dead_letter,
        busy=adapter.busy,
    )
    missing = settings.missing()
    log.info(
        "starting on http://%s:%d with store %s",
        host,
        port,
        settings.store_url,
        extra={"missing_settings": missing},
    )
    if missing:
        log.warning("missing settings (the affected commands will say so): %s", ", ".join(missing))
    from valine.queue.worker import PeriodicJobs
    from valine.usecases import RECONCILE

    every = float(settings.reconcile_every)
    hooks = []
    if services.scheduled:
        hooks.append(services.scheduler().tick)  # a bad cron expression stops start-up
    periodic = PeriodicJobs(
        services.queue, {RECONCILE: every}, check_interval=min(5.0, every), hooks=hooks
    )
    pool.start()
    periodic.start()
    try:
        serve(adapter, host, port)
    finally:
        commits.close()
        periodic.stop()
        pool.stop(timeout=10)
    return 0


def _runs_list(args: argparse.Namespace) -> int:
    from valine.runtime.wiring import Services

    runs = Services(local_settings()).store.recent_runs(args.repo, args.limit)
    if not runs:
        print("no runs stored")
    for run in runs:
        done = sum(1 for t in run.tasks if t.state.value in ("merged", "skipped"))
        print(f"{run.run_id}  {run.state.value:<13} {run.repo}  {done}/{len(run.tasks)} tasks")
    return 0


def _runs_show(args: argparse.Namespace) -> int:
    from valine.runtime.wiring import Services

    try:
        run = Services(local_settings()).store.get_run(args.run_id)
    except NotFound:
        print(f"valine: no run {args.run_id}", file=sys.stderr)
        return 1
    document = run.to_dict()
    document.pop("discord", None)  # holds an interaction token: not for terminals
    print(json.dumps(document, indent=2))
    return 0


def _register_commands(args: argparse.Namespace) -> int:
    from valine.core.commands import command_changes, registration_payload
    from valine.runtime.wiring import Services

    settings = local_settings()
    scope = Services(settings).policy.discord
    payload = registration_payload(scope.default_member_permissions)
    if args.dry_run:
        print(json.dumps(payload, indent=2))
        return 0
    from valine.runtime.clients import discord_client

    client = discord_client(settings, require=("DISCORD_APPLICATION_ID", "DISCORD_BOT_TOKEN"))
    guilds: list[str | None] = [args.guild] if args.guild else list(scope.guild_ids) or [None]
    for guild in guilds:
        where = f"guild {guild}" if guild else "globally"
        changes = command_changes(client.get_commands(guild), payload)
        if not changes:
            print(f"commands registered {where} are up to date; nothing sent")
            continue
        client.register_commands(payload, guild)
        print(f"registered {len(payload)} commands {where}:")
        for line in changes:
            print(f"  {line}")
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from valine.core.policy import rules_summary
    from valine.runtime.config import read_rules

    path = args.file or os.environ.get("VALINE_CONFIG") or None
    rules = read_rules(path)
    policy = rules.policy
    from valine.runtime.scheduler import check_schedule

    check_schedule(policy.schedule)  # the cron expressions and the time zone
    for repository in rules.repositories:
        try:
            check_schedule(repository.policy.schedule)
        except ConfigurationError as exc:
            raise ConfigurationError(f"repositories: {repository.name}: {exc}") from None
    shown = path or "valine.toml"
    if path is None and not os.path.exists(shown):
        print("no valine.toml here: the defaults apply")
    else:
        print(f"{shown}: valid")
    for line in rules_summary(rules):
        print(line)
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from valine.runtime.doctor import run_doctor

    return run_doctor(local_settings(), endpoint=args.endpoint)


def _audit(args: argparse.Namespace) -> int:
    import time

    from valine.runtime.wiring import Services

    entries = Services(local_settings()).store.audit_trail(args.run, args.limit)
    if not entries:
        print("no audit entries")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.at))
        print(f"{when}Z  user {e.actor:<20} {e.action:<8} {e.run_id or '-':<18} {e.outcome}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
