"""The GitHub stand-in's REST endpoints and its documents shaped like GitHub's.

Every field the OpenAPI description requires is present; errors use GitHub's status
codes and messages. Issues: ``labels=a,b`` means both labels; ``per_page`` (max 100),
``page`` and a ``Link`` header paginate. Merging checks, in order: closed → ``405``,
merge queue required → ``405``, ``sha`` not the head → ``409``. Check suites are listed
by ``GET /repos/{o}/{r}/commits/{ref}/check-suites`` (``app_id``, ``per_page``, ``page``),
oldest first, with the ``total_count`` of the whole list; ``ref`` is a known commit or a
pull request's branch name (``heads/`` optional), anything else is
``422 No commit found for SHA: <ref>``. Stricter than GitHub on purpose: a workflow
dispatch without ``inputs`` is refused (``422``); the workflow executor always sends them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlencode

from valine.testing.github.state import (
    _APP_NAMES,
    HEAD_MOVED_MESSAGE,
    Answer,
    Dispatch,
    GitHubState,
    Json,
    StandInCheckSuite,
    StandInComment,
    StandInHook,
    StandInIssue,
    StandInPull,
    _error,
    _iso,
    _node_id,
    _Repo,
    _user_id,
)

MERGE_QUEUE_MESSAGE = "Changes must be made through the merge queue"


NOT_MERGEABLE_MESSAGE = "Pull Request is not mergeable"


_REPO_PREFIX = r"/repos/(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+)"


_MERGE_METHODS = frozenset({"merge", "squash", "rebase"})


def _validation_failed(
    message: str, field_name: str, code: str = "invalid", *, resource: str = "Issue"
) -> Answer:
    error = {"resource": resource, "field": field_name, "code": code}
    return _error(422, message, errors=[error])


def _check_issue_patch(body: Mapping[str, Any]) -> Answer | None:
    """GitHub's 422 for a malformed ``PATCH /issues/{n}`` body, or None."""
    if "state" in body and body["state"] not in ("open", "closed"):
        return _validation_failed("Validation Failed", "state")
    for name in ("labels", "assignees"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, list):
            return _error(
                422, f"Invalid request.\n\nFor 'properties/{name}', {value!r} is not an array."
            )
        for item in value:
            ok = isinstance(item, str) or (
                name == "labels" and isinstance(item, dict) and isinstance(item.get("name"), str)
            )
            if not ok:
                return _validation_failed("Validation Failed", name)
    if "title" in body and not isinstance(body["title"], str | int | type(None)):
        return _validation_failed("Validation Failed", "title")
    if "body" in body and not isinstance(body["body"], str | type(None)):
        return _validation_failed("Validation Failed", "body")
    return None


class RestAPI(GitHubState):
    """The REST endpoints (called with the lock held) and GitHub-shaped documents."""

    app_id: str
    installation_id: int
    _token_ttl: float
    _installation_tokens: dict[str, float]
    _token_installations: dict[str, int]
    _window_reset: float

    def _list_issues(
        self, r: _Repo, _params: dict[str, str], query: Mapping[str, str], _body: Json
    ) -> Answer:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            return _validation_failed("Validation Failed", "state")
        wanted = [x.strip().lower() for x in query.get("labels", "").split(",") if x.strip()]
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
        except ValueError:
            return _validation_failed("Validation Failed", "per_page")
        sort = query.get("sort", "created")
        reverse = query.get("direction", "desc") != "asc"

        def sort_key(i: StandInIssue) -> tuple[Any, int]:
            key: Any = {"updated": i.updated_at, "comments": len(i.comments)}.get(
                sort, i.created_at
            )
            return key, i.number

        matching = [
            i
            for i in r.issues.values()
            if state in ("all", i.state)
            and all(w in {label.lower() for label in i.labels} for w in wanted)
        ]
        matching.sort(key=sort_key, reverse=reverse)
        items = matching[(page - 1) * per_page : page * per_page]
        headers = self._page_links(
            f"/repos/{r.full_name}/issues", query, page, per_page, len(matching)
        )
        return 200, [self._issue_json(r, i) for i in items], headers

    def _page_links(
        self, path: str, query: Mapping[str, str], page: int, per_page: int, total: int
    ) -> dict[str, str]:
        """The ``Link`` header of page ``page`` of ``total`` items (none if one page)."""
        last = max(1, -(-total // per_page))
        links = []

        def link(n: int, rel: str) -> str:
            q = {**query, "per_page": str(per_page), "page": str(n)}
            return f'<{self.url}{path}?{urlencode(q)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return {"link": ", ".join(links)} if links else {}

    def _get_issue(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        return 200, self._issue_json(r, issue), {}

    def _patch_issue(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        body = {} if body is None else body
        if not isinstance(body, dict):
            return _error(422, "Invalid request.\n\nThe request body must be an object.")
        problem = _check_issue_patch(body)
        if problem is not None:
            return problem
        if "title" in body and body["title"] is not None:
            issue.title = str(body["title"])
        if "body" in body:
            issue.body = body["body"] or ""
        if body.get("labels") is not None:
            names = [x if isinstance(x, str) else x["name"] for x in body["labels"]]
            self._relabel(issue, self._use_labels(r, names))
        if body.get("assignees") is not None:
            issue.assignees = list(dict.fromkeys(body["assignees"]))
        if "milestone" in body and body["milestone"] is None:
            issue.milestone_title = issue.milestone_due_on = None
        if "state" in body:
            default = "completed" if body["state"] == "closed" else "reopened"
            self._set_state(issue, body["state"], body.get("state_reason") or default)
        issue.updated_at = self._now()
        return 200, self._issue_json(r, issue), {}

    def _post_comment(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        if not isinstance(body, dict) or not isinstance(body.get("body"), str):
            return _validation_failed("Validation Failed", "body", "missing_field")
        comment = StandInComment(self._new_id(), body["body"], "valine[bot]", self._now())
        issue.comments.append(comment)
        issue.updated_at = comment.created_at
        document = self._comment_json(r, issue, comment)
        return 201, document, {"location": document["url"]}

    def _list_comments(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        issue = r.issues.get(int(params["number"]))
        if issue is None:
            return _error(404, "Not Found")
        return 200, [self._comment_json(r, issue, c) for c in issue.comments], {}

    def _dispatch(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        if not isinstance(body, dict) or not isinstance(body.get("ref"), str):
            return _error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        inputs = body.get("inputs")
        if not isinstance(inputs, dict):
            return _error(422, 'Invalid request.\n\n"inputs" wasn\'t supplied.')
        if len(inputs) > 25 or not all(
            isinstance(v, str | int | float | bool) for v in inputs.values()
        ):
            return _error(422, "Invalid request.\n\nFor 'properties/inputs', invalid inputs.")
        r.dispatches.append(Dispatch(unquote(params["workflow"]), body["ref"], dict(inputs)))
        return 204, None, {}

    def _get_pull(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        number = int(params["number"])
        if number not in r.pulls:
            return _error(404, "Not Found")
        return 200, self._pull_json(r, r.issues[number], r.pulls[number]), {}

    def _list_check_suites(
        self, r: _Repo, params: dict[str, str], query: Mapping[str, str], _body: Json
    ) -> Answer:
        ref = unquote(params["ref"])
        sha = self._resolve_ref(r, ref)
        if sha is None:
            return _error(422, f"No commit found for SHA: {ref}")
        try:
            per_page = min(100, max(1, int(query.get("per_page", "30"))))
            page = max(1, int(query.get("page", "1")))
            app_id = int(query["app_id"]) if "app_id" in query else None
        except ValueError:
            return _validation_failed("Validation Failed", "per_page", resource="CheckSuite")
        suites = [
            suite
            for suite in r.check_suites.get(sha, [])
            if app_id is None or self._app_json(suite.app)["id"] == app_id
        ]
        items = suites[(page - 1) * per_page : page * per_page]
        path = f"/repos/{r.full_name}/commits/{params['ref']}/check-suites"
        answer = {
            "total_count": len(suites),
            "check_suites": [self._check_suite_json(r, suite) for suite in items],
        }
        return 200, answer, self._page_links(path, query, page, per_page, len(suites))

    @staticmethod
    def _resolve_ref(r: _Repo, ref: str) -> str | None:
        """The commit ``ref`` names: a known SHA, or a pull request's branch."""
        if ref in r.commits:
            return ref
        branch = ref.removeprefix("heads/")
        for _, pull in sorted(r.pulls.items(), reverse=True):  # the newest branch wins
            if pull.head_ref == branch:
                return pull.head_sha
        return None

    def _merge(
        self, r: _Repo, params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        number = int(params["number"])
        refusal = self._merge_refusal(r, number, {} if body is None else body)
        if refusal is not None:
            return refusal
        answer = {
            "sha": self._complete_merge(r, number),
            "merged": True,
            "message": "Pull Request successfully merged",
        }
        return 200, answer, {}

    @staticmethod
    def _merge_refusal(r: _Repo, number: int, body: Json) -> Answer | None:
        """Why GitHub would refuse to merge, in GitHub's order; None if it would merge."""
        pull = r.pulls.get(number)
        if pull is None:
            return _error(404, "Not Found")
        if not isinstance(body, dict):
            return _error(422, "Invalid request.\n\nThe request body must be an object.")
        sha = body.get("sha")
        if body.get("merge_method", "merge") not in _MERGE_METHODS:
            problem: Answer | None = _validation_failed("Validation Failed", "merge_method")
        elif sha is not None and not isinstance(sha, str):
            problem = _validation_failed("Validation Failed", "sha")
        elif pull.merged or r.issues[number].state != "open":
            problem = _error(405, NOT_MERGEABLE_MESSAGE)
        elif r.merge_queue:
            problem = _error(405, MERGE_QUEUE_MESSAGE)
        elif sha is not None and sha != pull.head_sha:
            problem = _error(409, HEAD_MOVED_MESSAGE)
        else:
            problem = None
        return problem

    def _get_repo(
        self, r: _Repo, params: dict[str, str], query: Mapping[str, str], body: Json
    ) -> Answer:
        roles = ("pull", "triage", "push", "maintain", "admin")
        rank = roles.index(r.role)
        document = self._repo_json(r)
        # The full repository GET /repos/{o}/{r} answers has a few more fields.
        document.update(has_discussions=False, network_count=0, subscribers_count=0)
        document["permissions"] = {role: rank >= i for i, role in enumerate(roles)}
        return 200, document, {}

    def _list_labels(
        self, r: _Repo, params: dict[str, str], query: Mapping[str, str], body: Json
    ) -> Answer:
        labels = sorted(r.labels.values(), key=lambda label: label.id)
        return 200, [self._label_json(r, label.name) for label in labels[:100]], {}

    def _list_hooks(
        self, r: _Repo, params: dict[str, str], query: Mapping[str, str], body: Json
    ) -> Answer:
        if self._caller_installation is not None:  # an App: its permission, not a role
            if not r.installation_reads_hooks:
                return _error(403, "Resource not accessible by integration")
        elif r.role != "admin":
            return _error(404, "Not Found")  # a token without admin rights
        return 200, [self._hook_json(r, hook) for hook in r.hooks], {}

    def _list_org_hooks(
        self, _r: None, params: dict[str, str], query: Mapping[str, str], body: Json
    ) -> Answer:
        org = self._orgs.get(params["org"].lower())
        if org is None:
            return _error(404, "Not Found")
        caller = self._caller_installation
        if caller is None and not org.token_reads_hooks:
            return _error(404, "Not Found")  # a token without admin:org_hook, or not an owner
        if caller is not None and caller not in org.hook_readers:
            return _error(403, "Resource not accessible by integration")
        api = f"{self.url}/orgs/{org.login}/hooks"
        return 200, [_org_hook_json(api, hook) for hook in org.hooks[:100]], {}

    def _hook_json(self, r: _Repo, hook: StandInHook) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/hooks/{hook.id}"
        return {
            "type": "Repository",
            "id": hook.id,
            "name": "web",
            "active": hook.active,
            "events": list(hook.events),
            "config": {"url": hook.url, "content_type": hook.content_type, "insecure_ssl": "0"},
            "updated_at": hook.created_at,
            "created_at": hook.created_at,
            "url": api,
            "test_url": f"{api}/test",
            "ping_url": f"{api}/pings",
            "deliveries_url": f"{api}/deliveries",
            "last_response": {"code": None, "status": "unused", "message": None},
        }

    def _installation(
        self, r: _Repo, _params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        return 200, self._installation_json(r.owner, self._installation_id_of(r)), {}

    def _access_token(
        self, _r: None, params: dict[str, str], _query: Mapping[str, str], _body: Json
    ) -> Answer:
        installation = int(params["installation_id"])
        known = {self.installation_id, *(self._installation_id_of(r) for r in self._repos.values())}
        if installation not in known:
            return _error(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        expires = self._clock() + self._token_ttl
        self._installation_tokens[token] = expires
        self._token_installations[token] = installation
        answer = {
            "token": token,
            "expires_at": _iso(expires),
            "permissions": {
                "issues": "write",
                "pull_requests": "write",
                "actions": "write",
                "contents": "write",
            },
            "repository_selection": "all",
        }
        return 201, answer, {}

    def _owner(self, login: str) -> dict[str, Any]:
        """A repository's ``owner``: a user, or an organisation the stand-in knows."""
        document = self._user(login)
        if login.lower() in self._orgs:
            document["type"] = "Organization"
        return document

    def _user(self, login: str) -> dict[str, Any]:
        user_id = _user_id(login)
        api = f"{self.url}/users/{login}"
        return {
            "login": login,
            "id": user_id,
            "node_id": _node_id("U_", user_id),
            "avatar_url": f"{self.url}/avatars/{login}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.url}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
        }

    def _repo_json(self, r: _Repo) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}"
        html = f"{self.url}/{r.full_name}"
        templated = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "statuses_url": "/statuses/{sha}",
            "trees_url": "/git/trees{/sha}",
        }
        plain = [
            "contributors",
            "deployments",
            "downloads",
            "events",
            "forks",
            "hooks",
            "languages",
            "merges",
            "stargazers",
            "subscribers",
            "subscription",
            "tags",
            "teams",
        ]
        open_issues = sum(1 for i in r.issues.values() if i.state == "open")
        document: dict[str, Any] = {
            "id": r.id,
            "node_id": _node_id("R_", r.id),
            "name": r.name,
            "full_name": r.full_name,
            "owner": self._owner(r.owner),
            "private": False,
            "html_url": html,
            "description": None,
            "fork": False,
            "url": api,
            **{key: api + suffix for key, suffix in templated.items()},
            **{f"{name}_url": f"{api}/{name}" for name in plain},
            "git_url": f"git://standin/{r.full_name}.git",
            "ssh_url": f"git@standin:{r.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": r.default_branch,
            "open_issues": open_issues,
            "open_issues_count": open_issues,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": False,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": r.created_at,
            "created_at": r.created_at,
            "updated_at": r.created_at,
        }
        return document

    def _label_json(self, r: _Repo, name: str) -> dict[str, Any]:
        label = self._label(r, name)
        return {
            "id": label.id,
            "node_id": label.node_id,
            "url": f"{self.url}/repos/{r.full_name}/labels/{label.name}",
            "name": label.name,
            "description": label.description,
            "color": label.color,
            "default": False,
        }

    def _milestone_json(self, r: _Repo, issue: StandInIssue) -> dict[str, Any] | None:
        if issue.milestone_title is None:
            return None
        title = issue.milestone_title
        number = int(hashlib.sha256(title.encode()).hexdigest()[:4], 16)
        api = f"{self.url}/repos/{r.full_name}/milestones/{number}"
        return {
            "url": api,
            "html_url": f"{self.url}/{r.full_name}/milestone/{number}",
            "labels_url": f"{api}/labels",
            "id": number,
            "node_id": _node_id("MI_", number),
            "number": number,
            "state": "open",
            "title": title,
            "description": None,
            "creator": self._user(r.owner),
            "open_issues": 1,
            "closed_issues": 0,
            "created_at": r.created_at,
            "updated_at": r.created_at,
            "closed_at": None,
            "due_on": issue.milestone_due_on,
        }

    def _issue_json(self, r: _Repo, issue: StandInIssue) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/issues/{issue.number}"
        assignees = [self._user(login) for login in issue.assignees]
        pull = r.pulls.get(issue.number)
        kind = "pull" if pull else "issues"
        document: dict[str, Any] = {
            "id": issue.id,
            "node_id": _node_id("I_", issue.id),
            "url": api,
            "repository_url": f"{self.url}/repos/{r.full_name}",
            "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments",
            "events_url": f"{api}/events",
            "html_url": f"{self.url}/{r.full_name}/{kind}/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "title": issue.title,
            "body": issue.body or None,
            "user": self._user(issue.author),
            "labels": [self._label_json(r, name) for name in issue.labels],
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees,
            "milestone": self._milestone_json(r, issue),
            "locked": False,
            "active_lock_reason": None,
            "comments": len(issue.comments),
            "closed_at": issue.closed_at,
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "author_association": "OWNER" if issue.author == r.owner else "MEMBER",
        }
        if issue.state_reason is not None:
            # GitHub sends ``null`` here, but its description's enum does not allow it.
            document["state_reason"] = issue.state_reason
        if pull is not None:
            pulls_api = f"{self.url}/repos/{r.full_name}/pulls/{issue.number}"
            html = f"{self.url}/{r.full_name}/pull/{issue.number}"
            document["pull_request"] = {
                "url": pulls_api,
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": pull.merged_at,
            }
            document["draft"] = False
        return document

    def _comment_json(
        self, r: _Repo, issue: StandInIssue, comment: StandInComment
    ) -> dict[str, Any]:
        return {
            "id": comment.id,
            "node_id": _node_id("IC_", comment.id),
            "url": f"{self.url}/repos/{r.full_name}/issues/comments/{comment.id}",
            "html_url": (
                f"{self.url}/{r.full_name}/issues/{issue.number}#issuecomment-{comment.id}"
            ),
            "issue_url": f"{self.url}/repos/{r.full_name}/issues/{issue.number}",
            "body": comment.body,
            "user": self._user(comment.author),
            "created_at": comment.created_at,
            "updated_at": comment.created_at,
            "author_association": "NONE",
        }

    def _pull_json(self, r: _Repo, issue: StandInIssue, pull: StandInPull) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/pulls/{pull.number}"
        html = f"{self.url}/{r.full_name}/pull/{pull.number}"
        issue_api = f"{self.url}/repos/{r.full_name}/issues/{pull.number}"
        statuses = f"{self.url}/repos/{r.full_name}/statuses/{pull.head_sha}"
        repo = self._repo_json(r)
        owner = self._user(r.owner)
        assignees = [self._user(login) for login in issue.assignees]
        links = {
            "self": api,
            "html": html,
            "issue": issue_api,
            "comments": f"{issue_api}/comments",
            "review_comments": f"{api}/comments",
            "review_comment": f"{self.url}/repos/{r.full_name}/pulls/comments{{/number}}",
            "commits": f"{api}/commits",
            "statuses": statuses,
        }
        is_open = issue.state == "open" and not pull.merged
        return {
            "url": api,
            "id": pull.id,
            "node_id": _node_id("PR_", pull.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue_api,
            "commits_url": f"{api}/commits",
            "review_comments_url": f"{api}/comments",
            "review_comment_url": links["review_comment"],
            "comments_url": f"{issue_api}/comments",
            "statuses_url": statuses,
            "number": pull.number,
            "state": "open" if is_open else "closed",
            "locked": False,
            "title": issue.title,
            "user": self._user(issue.author),
            "body": issue.body or None,
            "labels": [self._label_json(r, name) for name in issue.labels],
            "milestone": self._milestone_json(r, issue),
            "active_lock_reason": None,
            "created_at": issue.created_at,
            "updated_at": issue.updated_at,
            "closed_at": issue.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees,
            "requested_reviewers": [],
            "requested_teams": [],
            "head": self._pull_head_json(r, pull),
            "base": {
                "label": f"{r.owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": pull.base_sha,
                "user": owner,
                "repo": repo,
            },
            "_links": {name: {"href": href} for name, href in links.items()},
            "author_association": self._association(r, issue, pull),
            "auto_merge": None,
            "draft": False,
            "merged": pull.merged,
            "mergeable": True if is_open else None,
            "mergeable_state": "clean" if is_open else "unknown",
            "merged_by": self._user(r.owner) if pull.merged else None,
            "comments": len(issue.comments),
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        }

    def _pull_head_json(self, r: _Repo, pull: StandInPull) -> dict[str, Any]:
        """A pull request's ``head``: a branch of this repository or of a fork."""
        head = r if pull.head_repo is None else self._repo(pull.head_repo)
        return {
            "label": f"{head.owner}:{pull.head_ref}",
            "ref": pull.head_ref,
            "sha": pull.head_sha,
            "user": self._user(head.owner),
            "repo": self._repo_json(head),
        }

    def _app_json(self, slug: str) -> dict[str, Any]:
        """A GitHub App (the ``integration`` of GitHub's description) named by its slug."""
        app_id = _user_id(f"app/{slug}")
        created = _iso(self._window_reset - 3600)
        return {
            "id": app_id,
            "slug": slug,
            "node_id": _node_id("A_", app_id),
            "client_id": f"Iv1.{hashlib.sha256(slug.encode()).hexdigest()[:16]}",
            "owner": self._user("github"),
            "name": _APP_NAMES.get(slug, slug),
            "description": None,
            "external_url": f"{self.url}/apps/{slug}",
            "html_url": f"{self.url}/apps/{slug}",
            "created_at": created,
            "updated_at": created,
            "permissions": {"checks": "write", "contents": "read", "metadata": "read"},
            "events": ["check_run", "check_suite", "pull_request", "push"],
        }

    def _pull_minimal_json(self, r: _Repo, pull: StandInPull) -> dict[str, Any]:
        repo = {"id": r.id, "url": f"{self.url}/repos/{r.full_name}", "name": r.name}
        return {
            "id": pull.id,
            "number": pull.number,
            "url": f"{self.url}/repos/{r.full_name}/pulls/{pull.number}",
            "head": {"ref": pull.head_ref, "sha": pull.head_sha, "repo": repo},
            "base": {"ref": pull.base_ref, "sha": pull.base_sha, "repo": repo},
        }

    def _check_suite_json(self, r: _Repo, suite: StandInCheckSuite) -> dict[str, Any]:
        api = f"{self.url}/repos/{r.full_name}/check-suites/{suite.id}"
        author = {"name": "Octo Cat", "email": "octocat@users.noreply.github.com"}
        tree = hashlib.sha1(suite.head_sha.encode(), usedforsecurity=False).hexdigest()
        return {
            "id": suite.id,
            "node_id": _node_id("CS_", suite.id),
            "head_branch": suite.head_branch,
            "head_sha": suite.head_sha,
            "status": suite.status,
            "conclusion": suite.conclusion,
            "url": api,
            "before": "0" * 40,
            "after": suite.head_sha,
            "pull_requests": [
                self._pull_minimal_json(r, pull) for pull in self._open_pulls_at(r, suite.head_sha)
            ],
            "app": self._app_json(suite.app),
            "repository": self._repo_json(r),
            "created_at": suite.created_at,
            "updated_at": suite.updated_at,
            "head_commit": {
                "id": suite.head_sha,
                "tree_id": tree,
                "message": f"Commit {suite.head_sha[:7]}",
                "timestamp": suite.created_at,
                "author": author,
                "committer": author,
            },
            "latest_check_runs_count": suite.check_runs,
            "check_runs_url": f"{api}/check-runs",
            "rerequestable": True,
            "runs_rerequestable": True,
        }

    def _installation_json(self, owner: str, installation: int) -> dict[str, Any]:
        created = _iso(self._window_reset - 3600)
        return {
            "id": installation,
            "account": self._user(owner),
            "repository_selection": "all",
            "access_tokens_url": (f"{self.url}/app/installations/{installation}/access_tokens"),
            "repositories_url": f"{self.url}/installation/repositories",
            "html_url": f"{self.url}/settings/installations/{installation}",
            "app_id": int(self.app_id) if self.app_id.isdigit() else 1,
            "app_slug": "valine-orchestrator",
            "target_id": self._user(owner)["id"],
            "target_type": "Organization",
            "permissions": {"issues": "write", "pull_requests": "write", "actions": "write"},
            "events": ["issues", "issue_comment", "pull_request", "check_suite"],
            "created_at": created,
            "updated_at": created,
            "single_file_name": None,
            "suspended_by": None,
            "suspended_at": None,
        }


def _org_hook_json(api: str, hook: StandInHook) -> dict[str, Any]:
    """An organisation webhook as ``GET /orgs/{org}/hooks`` lists it (``org-hook``)."""
    return {
        "type": "Organization",
        "id": hook.id,
        "name": "web",
        "active": hook.active,
        "events": list(hook.events),
        "config": {"url": hook.url, "content_type": hook.content_type, "insecure_ssl": "0"},
        "updated_at": hook.created_at,
        "created_at": hook.created_at,
        "url": f"{api}/{hook.id}",
        "ping_url": f"{api}/{hook.id}/pings",
        "deliveries_url": f"{api}/{hook.id}/deliveries",
    }
