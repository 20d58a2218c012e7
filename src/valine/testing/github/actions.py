"""The GitHub stand-in's GitHub Actions workflow runs, as a dispatch makes them.

Every accepted ``workflow_dispatch`` creates a run (event ``workflow_dispatch``, status
``queued``, the workflow's ``path``, the branch, and a title from :attr:`run_names`, as a
workflow's ``run-name`` gives one). The dispatch answers 204, or 200 with
``workflow_run_id``, ``run_url`` and ``html_url`` when the body asks
``return_run_details``; ``supports_run_details = False`` models a server without that
option (422, nothing started). ``GET /repos/{o}/{r}/actions/runs/{id}`` and
``GET .../actions/workflows/{wf}/runs`` (``event``, ``branch``, ``per_page``; newest
first) read them; :meth:`advance_workflow_run` moves one on (``in_progress``, then
``completed`` with a conclusion) and :meth:`workflow_run_payload` is the
``workflow_run`` webhook GitHub would send for its current status.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from valine.testing.github.rest import RestAPI
from valine.testing.github.state import Answer, Json, _error, _iso, _Repo


@dataclass
class StandInWorkflowRun:
    """One GitHub Actions workflow run (made by a dispatch)."""

    id: int
    path: str
    head_branch: str
    head_sha: str
    display_title: str
    created_at: float
    inputs: dict[str, Any]
    status: str = "queued"
    conclusion: str | None = None
    updated_at: float = 0.0


def _workflow_id(path: str) -> int:
    return zlib.crc32(path.encode()) % 10**8


class ActionsAPI(RestAPI):
    """Workflow runs over the stand-in's state (see the module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        #: False: a server without ``return_run_details`` (an older Enterprise Server).
        self.supports_run_details = True
        #: ``run-name`` templates by workflow file (``"deploy {run_id}"``: inputs filled in).
        self.run_names: dict[str, str] = {}
        self._workflow_runs: dict[str, dict[int, StandInWorkflowRun]] = {}

    # -- what tests read and do ----------------------------------------------------------

    def workflow_runs(self, repo: str) -> list[StandInWorkflowRun]:
        """The workflow runs of ``repo`` (each dispatch made one), oldest first."""
        with self._lock:
            return sorted(self._runs_of(self._repo(repo)).values(), key=lambda w: w.id)

    def advance_workflow_run(
        self, repo: str, run_id: int, status: str, conclusion: str | None = None
    ) -> None:
        """Move a workflow run on: ``in_progress``, or ``completed`` with a conclusion."""
        if (status == "completed") != (conclusion is not None):
            raise ValueError("a completed workflow run has a conclusion, an unfinished one none")
        with self._lock:
            run = self._runs_of(self._repo(repo))[run_id]
            run.status, run.conclusion, run.updated_at = status, conclusion, self._clock()

    def workflow_run_payload(self, repo: str, run_id: int) -> dict[str, Any]:
        """The ``workflow_run`` webhook for the run's current status (``requested`` while
        queued, ``in_progress``, ``completed``), as GitHub sends it."""
        with self._lock:
            r = self._repo(repo)
            run = self._runs_of(r)[run_id]
            return {
                "action": {"queued": "requested"}.get(run.status, run.status),
                "workflow_run": self._workflow_run_json(r, run),
                "workflow": {"id": _workflow_id(run.path), "path": run.path},
                "repository": self._repo_json(r),
                "sender": self._user(r.owner),
            }

    # -- endpoints ------------------------------------------------------------------------

    def _dispatch(
        self, r: _Repo, params: dict[str, str], query: Mapping[str, str], body: Json
    ) -> Answer:
        details = isinstance(body, dict) and "return_run_details" in body
        if details and not self.supports_run_details:
            return _error(422, 'Invalid request.\n\n"return_run_details" is not a permitted key.')
        plain = {k: v for k, v in body.items() if k != "return_run_details"} if details else body
        answer = super()._dispatch(r, params, query, plain)
        if answer[0] != 204:
            return answer
        assert isinstance(body, dict)
        run = self._start_workflow_run(r, unquote(params["workflow"]), body["ref"], body["inputs"])
        if body.get("return_run_details") is not True:
            return answer
        api = f"{self.url}/repos/{r.full_name}/actions/runs/{run.id}"
        html = f"{self.url}/{r.full_name}/actions/runs/{run.id}"
        return 200, {"workflow_run_id": run.id, "run_url": api, "html_url": html}, {}

    def _get_workflow_run(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        run = self._runs_of(r).get(int(params["run_id"]))
        if run is None:
            return _error(404, "Not Found")
        return 200, self._workflow_run_json(r, run), {}

    def _list_workflow_runs(
        self, r: _Repo, params: dict[str, str], query: Mapping[str, str], _body: Json
    ) -> Answer:
        name = unquote(params["workflow"]).rsplit("/", 1)[-1]
        runs = [
            run
            for run in sorted(self._runs_of(r).values(), key=lambda w: w.id, reverse=True)
            if run.path.rsplit("/", 1)[-1] == name
            and query.get("event", "workflow_dispatch") == "workflow_dispatch"
            and query.get("branch", run.head_branch) == run.head_branch
        ]
        per_page = min(int(query.get("per_page", "30")), 100)
        page = [self._workflow_run_json(r, run) for run in runs[:per_page]]
        return 200, {"total_count": len(runs), "workflow_runs": page}, {}

    # -- internals (callers hold the lock) -------------------------------------------------

    def _runs_of(self, r: _Repo) -> dict[int, StandInWorkflowRun]:
        return self._workflow_runs.setdefault(r.full_name, {})

    def _start_workflow_run(
        self, r: _Repo, workflow: str, ref: str, inputs: dict[str, Any]
    ) -> StandInWorkflowRun:
        path = workflow if "/" in workflow else f".github/workflows/{workflow}"
        title = self.run_names.get(workflow, "").format(**inputs) or workflow.rsplit(".", 1)[0]
        now = self._clock()
        run = StandInWorkflowRun(
            self._new_id(), path, ref, self._sha(), title, now, dict(inputs), updated_at=now
        )
        r.commits.add(run.head_sha)
        self._runs_of(r)[run.id] = run
        return run

    def _workflow_run_json(self, r: _Repo, run: StandInWorkflowRun) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/actions/runs/{run.id}"
        return {
            "id": run.id,
            "node_id": f"WFR_{run.id}",
            "name": run.path.rsplit("/", 1)[-1],
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": run.path,
            "display_title": run.display_title,
            "run_number": run.id,
            "run_attempt": 1,
            "event": "workflow_dispatch",
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": _workflow_id(run.path),
            "url": api,
            "html_url": f"{self.url}/{r.full_name}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": _iso(run.created_at),
            "updated_at": _iso(run.updated_at),
            "run_started_at": _iso(run.created_at),
            "jobs_url": f"{api}/jobs",
            "logs_url": f"{api}/logs",
            "check_suite_url": f"{api}/check-suite",
            "artifacts_url": f"{api}/artifacts",
            "cancel_url": f"{api}/cancel",
            "rerun_url": f"{api}/rerun",
            "workflow_url": f"{self.url}/repos/{r.full_name}/actions/workflows/{run.path}",
            "head_commit": None,
            "repository": self._repo_json(r),
            "head_repository": self._repo_json(r),
        }
