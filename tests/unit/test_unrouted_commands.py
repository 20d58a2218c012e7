"""A command from a channel that no ``[[repositories]]`` entry names, with several served.

It must never act on the first repository by default: ``/plan``, ``/digest`` and the
run commands whose run is not a served repository's are refused, naming the served
repositories and their channels; ``/status``, ``/help`` and autocomplete answer for all
of them; a run id still finds its run's repository; a thread counts as its channel.
With one repository every channel keeps going to it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import WEBHOOK_SECRET
from valine.core.commands import parse_command
from valine.core.models import Run
from valine.core.replies import Deferred, Reply
from valine.discord.interactions import Interaction
from valine.discord.render import interaction_response
from valine.runtime.config import Settings
from valine.runtime.wiring import Services
from valine.testing import payloads
from valine.usecases import PLAN

CONFIG = """
[discord]
guild_ids = ["4"]
[permissions.plan]
users = ["42"]
[permissions.approve]
users = ["42"]
[permissions.ship]
users = ["42"]
[permissions.cancel]
users = ["42"]

[[repositories]]
name = "acme/rocket"
channel_id = "100"
[[repositories]]
name = "acme/probe"
channel_id = "200"
[[repositories]]
name = "acme/lander"
"""
MAPPED = {"100": "acme/rocket", "200": "acme/probe"}
RUN_COMMANDS = ("approve", "ship", "cancel", "deploy")
THREAD = 11  # Discord's public thread channel type


def services_of(tmp_path: Path, config: str, **environ: str) -> Services:
    path = tmp_path / "valine.toml"
    path.write_text(config)
    return Services(
        Settings.from_env(
            {
                "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GITHUB_TOKEN": "test-token-never-sent",
                "VALINE_CONFIG": str(path),
                "VALINE_STORE": f"sqlite:///{tmp_path}/valine.db",
                **environ,
            }
        )
    )


@pytest.fixture
def services(tmp_path: Path) -> Services:
    return services_of(tmp_path, CONFIG)


def an_interaction(
    kind: int,
    channel: str,
    name: str | None = None,
    parent: str | None = None,
    *,
    user: str = "42",
    focused: str | None = None,
    **options: str,
) -> Interaction:
    document = payloads.interaction(kind, name, options, user_id=user, focused=focused)
    document["channel_id"] = channel
    if parent is not None:
        document["channel"] = {"id": channel, "type": THREAD, "parent_id": parent}
    return Interaction.from_payload(document)


def command(services: Services, channel: str, name: str, **options: str) -> Any:
    interaction = an_interaction(2, channel, name, **options)
    return services.answer_command(interaction, parse_command(interaction.data))


def text_of(answer: Any) -> str:
    """What the user reads of an answer (its content and embeds), and that it is private."""
    payload = interaction_response(answer)
    return json.dumps(payload["data"])


def queued_plans(services: Services) -> list[dict[str, Any]]:
    jobs = []
    while (job := services.queue.lease(60.0)) is not None:
        jobs.append(job)
    return [job.payload for job in jobs if job.kind == PLAN]


def store_run(services: Services, run_id: str, repo: str) -> None:
    services.store.create_run(Run(run_id=run_id, repo=repo, created_at=1.0, updated_at=1.0))


CHANNELS = st.from_regex(r"[1-9][0-9]{0,19}", fullmatch=True).filter(lambda c: c not in MAPPED)
USERS = itertools.count(1000)
RUN_IDS = st.from_regex(r"r[0-9]{8}-[a-z0-9]{6}", fullmatch=True)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # one service, by design
@given(
    channel=CHANNELS,
    parent=st.none() | CHANNELS,
    name=st.sampled_from(["plan", "digest", *RUN_COMMANDS]),
    run_id=RUN_IDS,
)
def test_a_command_from_a_channel_no_repository_names_is_refused_and_changes_nothing(
    services: Services, channel: str, parent: str | None, name: str, run_id: str
) -> None:
    options = {"run_id": run_id} if name in RUN_COMMANDS else {}
    user = str(next(USERS))  # one user per example: the rate limit is not what is tested
    interaction = an_interaction(2, channel, name, parent, user=user, **options)
    answer = services.answer_command(interaction, parse_command(interaction.data))
    assert isinstance(answer, Reply) and answer.private
    text = text_of(answer)
    if name in RUN_COMMANDS:
        assert f"There is no run `{run_id}`" in text
    else:
        for repo in ("acme/rocket", "acme/probe", "acme/lander"):
            assert f"`{repo}`" in text
        assert "<#100>" in text and "<#200>" in text
        assert "/plan repository:" in text and "channel_id" in text
    assert services.queue.depth() == 0
    assert services.store.recent_runs(None, limit=5) == []


def test_plan_in_a_repositorys_channel_or_its_thread_plans_that_repository(
    services: Services,
) -> None:
    assert isinstance(command(services, "100", "plan"), Deferred)
    thread = an_interaction(2, "999", "plan", parent="200")
    assert isinstance(services.answer_command(thread, parse_command(thread.data)), Deferred)
    assert isinstance(command(services, "555", "plan", repository="acme/lander"), Deferred)
    assert [job["repo"] for job in queued_plans(services)] == [
        "acme/rocket",
        "acme/probe",
        "acme/lander",
    ]


def test_an_unserved_repository_option_is_refused_naming_the_served_ones(
    services: Services,
) -> None:
    mapped = text_of(command(services, "100", "plan", repository="acme/other"))
    assert "`acme/other` is not a repository Valine serves here" in mapped
    unmapped = text_of(command(services, "555", "plan", repository="acme/other"))
    assert "this channel is none of theirs" in unmapped
    assert services.queue.depth() == 0


def test_a_run_id_finds_its_repository_from_any_channel(services: Services) -> None:
    store_run(services, "r20261202-aaaaaa", "acme/probe")
    answer = text_of(command(services, "555", "cancel", run_id="r20261202-aaaaaa"))
    assert "none of theirs" not in answer and "There is no run" not in answer
    assert services.store.get_run("r20261202-aaaaaa").state.value == "cancelled"


def test_a_run_of_a_repository_no_longer_served_is_left_alone_from_every_channel(
    services: Services,
) -> None:
    store_run(services, "r20261202-bbbbbb", "acme/gone")
    for channel in ("100", "555"):
        text = text_of(command(services, channel, "cancel", run_id="r20261202-bbbbbb"))
        assert "`acme/gone`, which this deployment no longer serves" in text
    assert services.store.get_run("r20261202-bbbbbb").state.value == "planned"
    assert services.queue.depth() == 0


def test_status_help_and_autocomplete_answer_for_every_repository_anywhere(
    services: Services,
) -> None:
    store_run(services, "r20261202-cccccc", "acme/probe")
    store_run(services, "r20261202-dddddd", "acme/rocket")
    status = text_of(command(services, "555", "status"))
    assert "r20261202-cccccc" in status and "r20261202-dddddd" in status
    assert "acme/lander" in text_of(command(services, "555", "help"))
    suggest = an_interaction(4, "555", "plan", repository="", focused="repository")
    assert services.autocomplete(suggest, "repository", "") == [
        "acme/rocket",
        "acme/probe",
        "acme/lander",
    ]
    runs = an_interaction(4, "555", "cancel", run_id="", focused="run_id")
    assert set(services.autocomplete(runs, "run_id", "")) == {
        "r20261202-cccccc",
        "r20261202-dddddd",
    }
    # in probe's channel, probe's run comes first
    in_probe = an_interaction(4, "200", "cancel", run_id="", focused="run_id")
    assert services.autocomplete(in_probe, "run_id", "")[0] == "r20261202-cccccc"


def test_a_button_whose_run_is_not_stored_is_refused_from_an_unmapped_channel(
    services: Services,
) -> None:
    press = an_interaction(3, "555")
    answer = services.press_button(press, "cancel:r20261202-eeeeee")
    assert "There is no run `r20261202-eeeeee`" in text_of(answer)


def test_with_one_repository_every_channel_goes_to_it(tmp_path: Path) -> None:
    one = services_of(
        tmp_path,
        '[discord]\nguild_ids = ["4"]\n[permissions.plan]\nusers = ["42"]\n',
        GITHUB_REPOSITORY="acme/solo",
    )
    assert isinstance(command(one, "555", "plan"), Deferred)
    assert "acme/solo" in text_of(command(one, "555", "digest"))
    assert [job["repo"] for job in queued_plans(one)] == ["acme/solo"]
