"""The product has no test switches: only the testing kit reads ``VALINE_TEST_*``.

The end-to-end tests' hooks (an offset clock, a lost enqueue) live in
``valine.testing.launcher``, which wraps the product's services; nothing else under
``src/valine`` may mention them, and the settings know no such variable.
"""

from __future__ import annotations

from pathlib import Path

from valine.runtime.config import ENV_NAMES, Settings
from valine.runtime.wiring import Services, SystemClock
from valine.testing.launcher import HookedServices, LossyQueue, OffsetClock

SRC = Path(__file__).resolve().parents[2] / "src" / "valine"


def test_only_the_testing_kit_mentions_the_hooks() -> None:
    mentions = [
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if "VALINE_TEST_" in path.read_text() and path.relative_to(SRC).parts[0] != "testing"
    ]
    assert mentions == []
    assert not [env for env in ENV_NAMES.values() if env.startswith("VALINE_TEST_")]


def test_the_product_services_use_the_wall_clock_and_their_queue(tmp_path: Path) -> None:
    settings = Settings.from_env({"VALINE_STORE": f"sqlite:///{tmp_path}/v.db"})
    services = Services(settings)
    assert isinstance(services.clock, SystemClock)
    assert services.use_case_queue is services.queue


def test_the_launcher_replaces_only_what_the_environment_asks(tmp_path: Path) -> None:
    settings = Settings.from_env({"VALINE_STORE": f"sqlite:///{tmp_path}/v.db"})
    clock_file = tmp_path / "clock"
    clock_file.write_text("3600")
    hooked = HookedServices(
        settings,
        {"VALINE_TEST_CLOCK_FILE": str(clock_file), "VALINE_TEST_LOSE_ENQUEUE": "ship_run"},
    )
    assert isinstance(hooked.clock, OffsetClock)
    assert hooked.clock.now() - SystemClock().now() > 3500
    assert isinstance(hooked.use_case_queue, LossyQueue)
    plain = HookedServices(settings, {})
    assert isinstance(plain.clock, SystemClock)
    assert plain.use_case_queue is plain.queue
