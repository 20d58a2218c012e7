"""The GitHub adapter of the :class:`~valine.ports.GitHub` port: what it asks, and in what order.

The client is split by concern: :mod:`~valine.github.auth` (token or App credentials),
:mod:`~valine.github.transport` (HTTP, retries, rate limits, the ETag cache),
:mod:`~valine.github.documents` (the GraphQL documents) and
:mod:`~valine.github.mapping` (answers as domain values); this module holds the port's
methods.

Synchronous (the workers are threads) on one pooled :class:`httpx.Client` per
:class:`GitHubClient`. ``gidgethub.sansio`` does what it is good at: request headers,
deciphering responses (errors, rate-limit headers, the ``Link: rel=next`` URL), and
``gidgethub.apps.get_jwt`` signs GitHub App JWTs.

Economy: every method is one request except ``read_ready_issues`` and
``list_ready_issues`` beyond 100 issues, ``pull_checks`` beyond 25 pull requests (one
GraphQL query each 25) and a GitHub App's token refresh (one request an hour). The REST
issue list is fetched conditionally: the last ``ETag`` of each URL is sent back in
``If-None-Match``
and a ``304`` (which GitHub does not count against the rate limit) returns the
remembered result. :attr:`GitHubClient.request_count` counts every HTTP
request sent, 304s, retries and token requests included.

Failures: network errors and 5xx are retried with exponential backoff and jitter;
``429`` and rate-limited ``403`` wait for ``Retry-After`` or ``x-ratelimit-reset`` when
that is soon enough. What outlasts the retries is :class:`GitHubUnavailable`; ``404`` is
:class:`NotFound`; other refusals are :class:`~valine.ports.GitHubError` and its merge
subclasses. No ``httpx`` or ``gidgethub`` exception leaves this module. Tokens are
never logged: a request is logged as method, path, status and ``x-github-request-id``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from valine.core.checks import CheckPicture
from valine.core.errors import NotFound
from valine.core.models import Issue, PullRequest, WorkflowRun
from valine.github import documents, mapping
from valine.github.auth import AppAuth, Authenticated, TokenAuth
from valine.github.documents import PULLS_PER_QUERY
from valine.logs import get_logger
from valine.ports import (
    GitHubError,
    HeadMoved,
    IssueSnapshot,
    IssueUpdate,
    MergeQueueRequired,
    MergeResult,
    NotMergeable,
    ReadyIssues,
    RepositoryIds,
)

__all__ = ["PULLS_PER_QUERY", "AppAuth", "GitHubClient", "TokenAuth"]

#: Every module of the client logs as ``valine.github.client``, as the one class did.
log = get_logger("valine.github.client")

#: Pages followed at most by one list call (100 issues or check suites each).
MAX_PAGES = 50


class GitHubClient(Authenticated):
    """The :class:`~valine.ports.GitHub` port over GitHub's REST API (thread-safe).

    ``sleep``, ``clock`` and ``jitter`` are injectable so tests run without waiting;
    ``max_retry_wait`` bounds the total backoff of one call and ``rate_limit_cap`` the
    total time one call may wait for a rate limit to lift (beyond it the call raises
    :class:`~valine.core.errors.RateLimited` with the reset, and the worker puts the job
    back until then). A spent limit is remembered per resource (``core``, ``graphql``)
    by the client, which the process's workers share: no request is sent before a known
    reset.
    """

    # -- the port -----------------------------------------------------------------------

    def list_ready_issues(self, repo: str, label: str) -> Sequence[Issue]:
        """Open issues carrying ``label``, pull requests excluded, over REST.

        One request per 100 issues, ETag-conditional (an unchanged list costs no rate
        limit). ``/plan`` uses :meth:`read_ready_issues` instead, which also reads the
        node ids a run needs in the same request.
        """
        query = urlencode({"state": "open", "labels": label, "per_page": 100})
        url: str | None = f"{self._repo_url(repo)}/issues?{query}"
        issues: list[Issue] = []
        for _ in range(MAX_PAGES):
            if url is None:
                break
            reply = self._request("GET", url, repo=repo, conditional=True)
            if not isinstance(reply.data, list):
                raise GitHubError(reply.status, "unexpected response: issue list is not a list")
            issues.extend(
                mapping.shaped(mapping.issue, item)
                for item in reply.data
                if "pull_request" not in item
            )
            url = reply.next_url
        else:
            if url is not None:
                log.warning("issue list of %s cut at %d pages", repo, MAX_PAGES)
        return tuple(issues)

    def read_repository(self, repo: str, resource: str = "") -> Any:
        """A plain read for ``valine doctor``: the repository itself (``""``), or the first
        100 of its ``labels`` or ``hooks``. Raises NotFound (no access) or GitHubError."""
        if resource not in ("", "labels", "hooks"):
            raise ValueError(f"not a resource the doctor reads: {resource!r}")
        url = self._repo_url(repo) + (f"/{resource}?per_page=100" if resource else "")
        return self._request("GET", url, repo=repo).data

    def read_organisation_hooks(self, repo: str) -> Any:
        """For ``valine doctor``: the first 100 webhooks of the organisation owning
        ``repo``, read with ``repo``'s credentials (an App installation needs the
        ``organization_hooks`` read permission, a token ``admin:org_hook``). Raises
        NotFound (404: no access, or not an organisation) or GitHubError (403)."""
        owner = self._repo_url(repo).rsplit("/", 2)[-2]
        url = f"{self._base}/orgs/{quote(owner, safe='')}/hooks?per_page=100"
        return self._request("GET", url, repo=repo).data

    def dispatch_workflow(
        self, repo: str, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> None:
        """Start a ``workflow_dispatch`` run of ``workflow`` (file name or id) on ``ref``."""
        url = f"{self._repo_url(repo)}/actions/workflows/{quote(str(workflow), safe='')}"
        payload = {"ref": ref, "inputs": {str(k): str(v) for k, v in inputs.items()}}
        # A dispatch must not happen twice: only failures that cannot have reached GitHub
        # are retried; a timeout or 5xx raises GitHubUnavailable(request_sent=True).
        self._request("POST", f"{url}/dispatches", repo=repo, json=payload, retry_ambiguous=False)

    def dispatch_deployment(
        self, repo: str, workflow: str, ref: str, inputs: Mapping[str, str]
    ) -> WorkflowRun | None:
        """Dispatch ``workflow`` asking for the run's details (``return_run_details``).

        GitHub answers 200 with ``workflow_run_id`` and the run's URLs; a server that
        does not know the option refuses it (422) before starting anything, and then the
        dispatch is sent once more without it (204: no details).
        """
        url = f"{self._repo_url(repo)}/actions/workflows/{quote(str(workflow), safe='')}"
        payload: dict[str, Any] = {
            "ref": ref,
            "inputs": {str(k): str(v) for k, v in inputs.items()},
            "return_run_details": True,
        }
        try:
            reply = self._request(
                "POST", f"{url}/dispatches", repo=repo, json=payload, retry_ambiguous=False
            )
        except GitHubError as exc:
            if exc.status not in (400, 422) or "return_run_details" not in exc.message:
                raise
            payload.pop("return_run_details")
            self._request(
                "POST", f"{url}/dispatches", repo=repo, json=payload, retry_ambiguous=False
            )
            return None
        if reply.status != 200 or not isinstance(reply.data, Mapping):
            return None
        return mapping.shaped(mapping.dispatched_run, reply.data)

    def workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        """One GitHub Actions workflow run (``NotFound`` if there is none)."""
        url = f"{self._repo_url(repo)}/actions/runs/{int(run_id)}"
        return mapping.shaped(mapping.workflow_run, self._request("GET", url, repo=repo).data)

    def dispatched_runs(
        self, repo: str, workflow: str, branch: str, since: float
    ) -> Sequence[WorkflowRun]:
        """The ``workflow_dispatch`` runs of ``workflow`` on ``branch`` created since ``since``.

        One request for the newest 100 (GitHub lists newest first); the time is filtered
        here, since the ``created`` parameter is described as a plain date-time.
        """
        query = urlencode({"event": "workflow_dispatch", "branch": branch, "per_page": 100})
        url = (
            f"{self._repo_url(repo)}/actions/workflows/{quote(str(workflow), safe='')}/runs?{query}"
        )
        reply = self._request("GET", url, repo=repo)
        runs = [mapping.shaped(mapping.workflow_run, r) for r in reply.data["workflow_runs"]]
        chosen = (r for r in runs if r.created_at >= since)
        return sorted(chosen, key=lambda r: (r.created_at, r.id))

    # -- GraphQL: several changes in one request --------------------------------------

    def read_ready_issues(
        self, repo: str, label: str, labels: Sequence[str], logins: Sequence[str] = ()
    ) -> ReadyIssues:
        """The ready issues and the run's node ids in one GraphQL query (see the port).

        Pages of 100 issues; each further page is one more query (issues only), at
        most :data:`MAX_PAGES` in all. GraphQL rate limits (HTTP 200, ``RATE_LIMITED``)
        are waits, as for every GraphQL request.
        """
        owner, name = self._repo_url(repo).rsplit("/", 2)[-2:]
        document, variables = documents.ready_issues_query(owner, name, label, labels, logins)
        data = self.graphql(document, variables, repo=repo, not_found_ok=True)
        repository = data.get("repository")
        if not isinstance(repository, Mapping):
            raise NotFound(f"GitHub: no repository {repo}")
        ids = mapping.shaped(functools.partial(mapping.repository_ids, labels, logins), data)
        issues: list[Issue] = []
        page = repository.get("issues")
        for pages in range(1, MAX_PAGES + 1):
            after = self._take_issue_page(repo, page, issues)
            if after is None:
                break
            if pages == MAX_PAGES:
                log.warning("issue list of %s cut at %d pages", repo, MAX_PAGES)
                break
            document, variables = documents.ready_issues_query(owner, name, label, after=after)
            repository = self.graphql(document, variables, repo=repo).get("repository")
            page = repository.get("issues") if isinstance(repository, Mapping) else None
        return ReadyIssues(tuple(issues), ids)

    @staticmethod
    def _take_issue_page(repo: str, page: Any, into: list[Issue]) -> str | None:
        """Add one page of ``Repository.issues`` to ``into``; the next page's cursor."""
        if not isinstance(page, Mapping) or not isinstance(page.get("nodes"), list):
            raise GitHubError(200, "unexpected response: the issue list is not a connection")
        for node in page["nodes"]:
            issue = mapping.shaped(mapping.graphql_issue, node)
            if issue is None:
                number = node.get("number") if isinstance(node, Mapping) else "?"
                log.warning("%s#%s has over 100 labels: left out of the plan", repo, number)
                continue
            into.append(issue)
        info = page.get("pageInfo") or {}
        cursor = info.get("endCursor")
        return str(cursor) if info.get("hasNextPage") and cursor else None

    def repository_ids(
        self, repo: str, labels: Sequence[str], logins: Sequence[str] = ()
    ) -> RepositoryIds:
        """Node ids of the repository, of ``labels`` and of ``logins`` (one GraphQL query)."""
        owner, name = repo.split("/", 1)
        declarations = ["$owner: String!", "$name: String!"]
        variables: dict[str, Any] = {"owner": owner, "name": name}
        label_fields, user_fields = documents.id_fields(labels, logins, declarations, variables)
        document = (
            f"query({', '.join(declarations)}) {{ "
            f"repository(owner: $owner, name: $name) {{ id {label_fields} }} "
            f"{user_fields} }}"
        )
        # GitHub answers an unknown login or repository with null plus a NOT_FOUND error.
        data = self.graphql(document, variables, repo=repo, not_found_ok=True)
        if not isinstance(data.get("repository"), Mapping):
            raise NotFound(f"GitHub: no repository {repo}")
        return mapping.shaped(functools.partial(mapping.repository_ids, labels, logins), data)

    def create_labels(
        self, repo: str, repository_id: str, names: Sequence[str]
    ) -> Mapping[str, str]:
        """Create labels in one mutation; their node ids by name."""
        if not names:
            return {}
        declarations, fields, variables = [], [], {}
        for i, label in enumerate(names):
            declarations.append(f"$c{i}: CreateLabelInput!")
            fields.append(f"c{i}: createLabel(input: $c{i}) {{ label {{ id name }} }}")
            variables[f"c{i}"] = {"repositoryId": repository_id, "name": label, "color": "ededed"}
        document = f"mutation({', '.join(declarations)}) {{ {' '.join(fields)} }}"
        data = self.graphql(document, variables, repo=repo)
        return {label: str(data[f"c{i}"]["label"]["id"]) for i, label in enumerate(names)}

    def update_issues(
        self, repo: str, updates: Sequence[IssueUpdate], *, partial: bool = False
    ) -> Mapping[str, str]:
        """Apply every update in one GraphQL mutation; fields run in order (see the port).

        With ``partial``, the fields GitHub refused are returned as ``{node_id: error}``
        (GitHub runs the other fields); without it any error raises ``GitHubError``.
        """
        if not updates:
            return {}
        document, variables, owners = documents.issue_mutation(updates)
        # The repository picks the App installation whose token the mutation needs.
        data, errors = self._graphql_answer(document, variables, repo=repo)
        failed: dict[str, str] = {}
        unplaced = []
        for error in errors:
            path = error.get("path") if isinstance(error, Mapping) else None
            node_id = owners.get(str(path[0])) if isinstance(path, list) and path else None
            if node_id is None:
                unplaced.append(error)
            else:
                failed[node_id] = "; ".join(
                    filter(None, (failed.get(node_id), mapping.message(error)))
                )
        if unplaced or (failed and not partial) or not isinstance(data, dict):
            messages = (
                "; ".join(mapping.message(e) for e in errors) or "GraphQL answer without data"
            )
            raise GitHubError(200, f"GraphQL: {messages}")
        return failed

    def read_issue(self, repo: str, number: int) -> IssueSnapshot:
        """An issue's labels and assignees and every comment's body (REST, paginated)."""
        base = f"{self._repo_url(repo)}/issues/{int(number)}"
        data = self._request("GET", base, repo=repo).data
        if not isinstance(data, Mapping):
            raise GitHubError(200, f"unexpected response: issue #{number} is not an object")
        comments: list[str] = []
        url: str | None = f"{base}/comments?per_page=100"
        for _ in range(MAX_PAGES):
            if url is None:
                break
            reply = self._request("GET", url, repo=repo)
            if not isinstance(reply.data, list):
                raise GitHubError(reply.status, "unexpected response: comments are not a list")
            comments.extend(str(c.get("body") or "") for c in reply.data if isinstance(c, Mapping))
            url = reply.next_url
        return IssueSnapshot(
            labels=tuple(str(label["name"]) for label in data.get("labels") or ()),
            assignees=tuple(str(a["login"]) for a in data.get("assignees") or ()),
            comments=tuple(comments),
        )

    def enqueue_pull(self, repo: str, number: int, sha: str) -> None:
        """Add the pull request to its merge queue (reads its node id first)."""
        url = f"{self._repo_url(repo)}/pulls/{int(number)}"
        data = self._request("GET", url, repo=repo).data
        node_id = data.get("node_id") if isinstance(data, Mapping) else None
        if not node_id:
            raise GitHubError(0, f"pull request #{number} has no node id")
        document = (
            "mutation($q: EnqueuePullRequestInput!) { "
            "enqueuePullRequest(input: $q) { mergeQueueEntry { id } } }"
        )
        self.graphql(document, {"q": {"pullRequestId": node_id, "expectedHeadOid": sha}}, repo=repo)

    def graphql(
        self,
        document: str,
        variables: Mapping[str, Any],
        *,
        repo: str | None = None,
        not_found_ok: bool = False,
    ) -> dict[str, Any]:
        """One GraphQL request; its ``data``. Errors in the answer raise ``GitHubError``.

        With ``not_found_ok``, ``NOT_FOUND`` errors are left to the caller: the fields
        they concern are null in ``data``.
        """
        data, all_errors = self._graphql_answer(document, variables, repo=repo)
        errors = [
            e
            for e in all_errors
            if not (not_found_ok and isinstance(e, Mapping) and e.get("type") == "NOT_FOUND")
        ]
        if errors:
            messages = "; ".join(mapping.message(e) for e in errors if e)
            raise GitHubError(200, f"GraphQL: {messages}")
        if not isinstance(data, dict):
            raise GitHubError(200, "GraphQL answer without data")
        return data

    def _graphql_answer(
        self, document: str, variables: Mapping[str, Any], *, repo: str | None
    ) -> tuple[Any, list[Any]]:
        """One GraphQL request: its ``data`` and its ``errors`` (a list, maybe empty)."""
        reply = self._request(
            "POST",
            self._graphql_url,
            repo=repo,
            json={"query": document, "variables": dict(variables)},
            # A mutation whose answer was lost (timeout, 5xx) may have been applied: it is
            # not sent again blindly; GitHubUnavailable(request_sent=True) lets the caller
            # read back what is there and send only what is missing.
            retry_ambiguous=not documents.is_mutation(document),
        )
        body = reply.data if isinstance(reply.data, Mapping) else {}
        errors = body.get("errors")
        return body.get("data"), list(errors) if isinstance(errors, list) else []

    def get_pull(self, repo: str, number: int) -> PullRequest:
        """One pull request (``NotFound`` if there is none)."""
        reply = self._request("GET", f"{self._repo_url(repo)}/pulls/{int(number)}", repo=repo)
        return mapping.shaped(mapping.pull, reply.data)

    def pull_checks(
        self, repo: str, numbers: Sequence[int], *, merge_queue: bool = False
    ) -> Sequence[CheckPicture]:
        """Every check on the head of each pull request (see the port): one GraphQL query.

        The query asks, per pull request, for its head commit's check suites (each
        with its latest check runs) and commit statuses, 100 of each; a list cut
        there makes the picture incomplete, which is never green. With
        ``merge_queue`` it also asks for ``merged`` and ``mergeQueueEntry`` (only then:
        a GitHub Enterprise Server without merge queues does not know the field).
        """
        owner, name = self._repo_url(repo).rsplit("/", 2)[-2:]
        wanted = list(dict.fromkeys(int(n) for n in numbers))
        pictures: list[CheckPicture] = []
        for start in range(0, len(wanted), PULLS_PER_QUERY):
            chunk = wanted[start : start + PULLS_PER_QUERY]
            document, variables = documents.checks_query(owner, name, chunk, merge_queue)
            data = self.graphql(document, variables, repo=repo, not_found_ok=True)
            repository = data.get("repository")
            if not isinstance(repository, Mapping):
                raise NotFound(f"repository {repo} not found")
            for i, number in enumerate(chunk):
                node = repository.get(f"p{i}")
                if node is not None:
                    pictures.append(
                        mapping.shaped(functools.partial(mapping.picture, number), node)
                    )
        return pictures

    def merge_pull(self, repo: str, number: int, sha: str, method: str) -> MergeResult:
        """Merge only if the head is still ``sha`` (see the port for the errors).

        Idempotent: if GitHub refuses because the pull request is already merged at
        ``sha`` (say, an earlier attempt merged it but its answer was lost), the
        existing merge commit is returned -- one extra request, on that path only.
        """
        url = f"{self._repo_url(repo)}/pulls/{int(number)}"
        try:
            reply = self._request(
                "PUT", f"{url}/merge", repo=repo, json={"sha": sha, "merge_method": method}
            )
        except GitHubError as exc:
            if exc.status == 409:
                raise HeadMoved(exc.status, exc.message) from None
            if exc.status == 405 and "merge queue" in exc.message.lower():
                raise MergeQueueRequired(exc.status, exc.message) from None
            if exc.status == 405:
                merged = self._already_merged(url, repo, sha)
                if merged is not None:
                    return merged
            if exc.status in (405, 422):
                raise NotMergeable(exc.status, exc.message) from None
            raise
        data = reply.data
        if not isinstance(data, Mapping) or not data.get("merged") or not data.get("sha"):
            message = data.get("message", "not merged") if isinstance(data, Mapping) else ""
            raise NotMergeable(reply.status, str(message or "not merged"))
        return MergeResult(sha=str(data["sha"]))

    def _already_merged(self, url: str, repo: str, sha: str) -> MergeResult | None:
        """The merge commit if the pull request is already merged with head ``sha``."""
        data = self._request("GET", url, repo=repo).data
        if not isinstance(data, Mapping) or not data.get("merged"):
            return None
        head = data.get("head")
        if not isinstance(head, Mapping) or head.get("sha") != sha:
            return None
        merge_sha = data.get("merge_commit_sha")
        return MergeResult(sha=str(merge_sha)) if merge_sha else None
