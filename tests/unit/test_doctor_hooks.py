"""`valine doctor`'s webhook verdict over every mix of repository and organisation hooks.

A webhook is called missing only when every list that could hold one was read and none
sends to the service; an organisation whose webhooks cannot be read is "could not
check", never "missing".
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from valine.runtime.doctor import REQUIRED_EVENTS, OrgHooks, check_hooks

ENDPOINT = "https://valine.example"
OURS = ENDPOINT + "/github/webhook"


def hook(url: str, number: int) -> dict[str, Any]:
    return {
        "id": number,
        "events": list(REQUIRED_EVENTS),
        "active": True,
        "config": {"url": url, "content_type": "json"},
    }


HOOKS = st.lists(
    st.sampled_from([OURS, "https://elsewhere.example/github/webhook", "https://ci.example/"]),
    max_size=3,
).map(lambda urls: [hook(url, i) for i, url in enumerate(urls)])
READ = st.none() | HOOKS  # None: GitHub refused to list them (403 or 404)
ORGS = st.none() | st.builds(OrgHooks, st.just("acme"), READ)


@given(hooks=READ, org=ORGS)
def test_missing_only_when_every_list_was_read_and_none_sends_here(
    hooks: list[dict[str, Any]] | None, org: OrgHooks | None
) -> None:
    findings = check_hooks(hooks, ENDPOINT, org)
    texts = [f.what for f in findings]
    ours = [
        h
        for h in (hooks or []) + list(org.hooks or [] if org else [])
        if h["config"]["url"] == OURS
    ]
    org_unread = org is not None and org.hooks is None
    missing = [f for f in findings if f.level == "fail"]
    if ours:
        assert missing == []
        assert sum("sends every event" in t for t in texts) == len(ours)
        assert not any("could not check" in t for t in texts)
    else:
        assert bool(missing) == (hooks is not None and not org_unread)
        assert any("could not check the organisation webhooks of acme" in t for t in texts) == (
            org_unread
        )
    twice = any("arrives twice" in t for t in texts)
    mine = any(h["config"]["url"] == OURS for h in hooks or [])
    theirs = org is not None and any(h["config"]["url"] == OURS for h in org.hooks or [])
    assert twice == (mine and theirs)
