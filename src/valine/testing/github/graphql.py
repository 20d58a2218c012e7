"""The GitHub stand-in's GraphQL endpoint (``POST /graphql``) over the same state.

It serves the small part of GitHub's schema the client uses:
``repository(owner, name) { id label(name) { id } issues(...) { ... } pullRequest(number)
{ merged mergeQueueEntry { ... } ... checks } }`` (connections cut by ``first``/``last``
and paged by ``after`` cursors),
``user(login) { id }`` and the mutations ``addLabelsToLabelable``,
``removeLabelsFromLabelable``, ``addComment``, ``addAssigneesToAssignable``, ``closeIssue``,
``createLabel`` and ``enqueuePullRequest``. As on GitHub: the whole document is validated
and the variables coerced before anything runs (errors then come without ``data``);
mutation fields run serially in document order; a field that fails is ``null`` with an
``errors`` entry (``type`` ``NOT_FOUND`` for an unknown node id, repository or login) and
the other fields still run. ``user(login)`` knows every login seen (owners, authors,
assignees, commenters; ``[bot]`` logins are not users) and those added with
:meth:`~valine.testing.github.state.GitHubState.add_user`. The error messages for
enqueueing are the stand-in's own wording where GitHub's is not documented.

Documents are validated and executed by graphql-core on GitHub's published schema when
``make material`` has installed it, else on the served part (:mod:`.schema`); every
field resolves through :meth:`GraphQLAPI._gql_resolve` over the stand-in's state.
Anything that is not a valid document (syntax, unknown fields, wrong variables, a field
GitHub has and the stand-in does not serve) gets a GraphQL error and nothing runs.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo, execute

from valine.testing.github.schema import Schemas
from valine.testing.github.state import (
    _APP_NAMES,
    HEAD_MOVED_MESSAGE,
    Answer,
    GitHubState,
    Json,
    StandInComment,
    StandInIssue,
    StandInLabel,
    StandInQueueEntry,
    _decode_node_id,
    _error,
    _node_id,
    _Repo,
    _user_id,
)

GRAPHQL_DOCS_URL = "https://docs.github.com/graphql"


NOT_ENQUEUEABLE_MESSAGE = "Pull request is not in a state to be added to the merge queue"


NO_MERGE_QUEUE_MESSAGE = "Merge queue is not enabled for this pull request's base branch"


def _combined(contexts: Sequence[Mapping[str, Any]]) -> str:
    """GitHub's combined state of commit statuses: any error/failure, else pending, else success."""
    states = {c["state"] for c in contexts}
    if states & {"ERROR", "FAILURE"}:
        return "FAILURE" if "FAILURE" in states else "ERROR"
    return "PENDING" if "PENDING" in states else "SUCCESS"


def _filter_runs(runs: Sequence[Any], filter_by: Mapping[str, Any] | None) -> list[Any]:
    """Check runs kept by a ``CheckRunFilter`` (every run is its name's latest here)."""
    kept = list(runs)
    if not filter_by:
        return kept
    if filter_by.get("checkName") is not None:
        kept = [r for r in kept if r["name"] == filter_by["checkName"]]
    statuses = filter_by.get("statuses") or (
        [filter_by["status"]] if filter_by.get("status") else []
    )
    if statuses:
        kept = [r for r in kept if r["status"] in statuses]
    if filter_by.get("conclusions"):
        kept = [r for r in kept if r["conclusion"] in filter_by["conclusions"]]
    return kept


def _connection(items: Sequence[Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A GraphQL connection of ``items`` cut by ``after`` then ``first`` / ``last``.

    Cursors are opaque strings of an item's position (``endCursor`` of a page is what
    the next page's ``after`` takes); an ``after`` the stand-in did not serve is
    refused. As on GitHub, ``first`` and ``last`` may each be at most 100.
    """
    first, last = arguments.get("first"), arguments.get("last")
    if first is None and last is None:
        raise _FieldError(
            "MISSING_PAGINATION_BOUNDARIES",
            "You must provide a `first` or `last` value to properly paginate.",
        )
    for name, bound in (("first", first), ("last", last)):
        if bound is not None and not 0 <= int(bound) <= 100:
            raise _FieldError(
                "EXCESSIVE_PAGINATION" if int(bound) > 100 else "INVALID_PAGINATION",
                f"Requesting {bound} records on the connection exceeds the `{name}` limit "
                "of 100 records."
                if int(bound) > 100
                else f"`{name}` must be a positive number",
            )
    start = 0
    if arguments.get("after") is not None:
        start = _cursor_position(arguments["after"]) + 1
    window = list(range(start, len(items)))
    if first is not None:
        window = window[: int(first)]
    if last is not None:
        window = window[-int(last) :] if int(last) else []
    return {
        "nodes": [items[i] for i in window],
        "totalCount": len(items),
        "pageInfo": {
            "hasNextPage": bool(window) and window[-1] < len(items) - 1 and first is not None,
            "hasPreviousPage": bool(window) and window[0] > 0 and last is not None,
            "startCursor": _cursor(window[0]) if window else None,
            "endCursor": _cursor(window[-1]) if window else None,
        },
    }


def _cursor(position: int) -> str:
    """The opaque cursor of the item at ``position`` of a connection."""
    return base64.b64encode(f"cursor:v2:{position}".encode()).decode()


def _cursor_position(cursor: Any) -> int:
    """The position a cursor made by :func:`_cursor` stands for (a bad one is refused)."""
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
        match = re.fullmatch(r"cursor:v2:(\d+)", text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        match = None
    if match is None:
        raise _FieldError(
            "INVALID_CURSOR_ARGUMENTS", f"`{cursor}` does not appear to be a valid cursor."
        )
    return int(match.group(1))


def _error_entry(error: GraphQLError) -> dict[str, Any]:
    """GitHub's ``errors`` entry: a failed field's ``type`` first, as GitHub sends it."""
    failure = error.original_error
    if isinstance(failure, _FieldError):
        return {
            "type": failure.type,
            "path": error.path,
            "locations": error.formatted.get("locations", []),
            "message": failure.message,
        }
    return dict(error.formatted)


class _FieldError(Exception):
    """One field failed while running: it becomes ``null`` and an ``errors`` entry."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.type = error_type
        self.message = message


#: Connection fields the stand-in cuts with ``first`` / ``last``.
_GQL_CONNECTIONS = frozenset(
    {
        ("PullRequest", "commits"),
        ("Commit", "checkSuites"),
        ("CheckSuite", "checkRuns"),
        ("Issue", "labels"),
    }
)


class GraphQLAPI(GitHubState):
    """``POST /graphql`` (called with the lock held): validate, then execute on the state."""

    #: The schema documents are validated and executed on (see :mod:`.schema`).
    graphql_schema: Schemas

    def _graphql(
        self, _r: None, _params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        """``POST /graphql``: validate the whole document, then execute it (graphql-core)."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _error(400, "A query attribute must be specified and must be a string.")
        values = body.get("variables")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            return _error(400, "Variables must be an object.")
        operation = body.get("operationName")
        document, refusals = self.graphql_schema.prepare(body["query"])
        if document is None:
            return 200, {"errors": refusals}, {}
        result = execute(
            self.graphql_schema.executable,
            document,
            variable_values=values,
            operation_name=operation if isinstance(operation, str) else None,
            field_resolver=self._gql_field,
        )
        assert not isinstance(result, Awaitable)  # every resolver is synchronous
        answer: dict[str, Any] = {}
        if result.data is not None:
            answer["data"] = result.data
        if result.errors:
            answer["errors"] = [_error_entry(error) for error in result.errors]
        return 200, answer, {}

    def _gql_field(self, source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        """graphql-core's resolver of every field: the stand-in's state behind it."""
        return self._gql_resolve(info.parent_type.name, info.field_name, source, arguments)

    def _gql_resolve(
        self, type_name: str, field_name: str, source: Any, arguments: Mapping[str, Any]
    ) -> Any:
        """One field's value: a leaf, the source of an object, or None."""
        if type_name == "Query":
            if field_name == "repository":
                return self._gql_repository(str(arguments["owner"]), str(arguments["name"]))
            return self._gql_user(str(arguments["login"]))
        if type_name == "Mutation":
            mutation = _GQL_MUTATIONS[field_name]
            payload: dict[str, Any] = mutation(self, arguments["input"])
            return {"clientMutationId": arguments["input"].get("clientMutationId"), **payload}
        if (type_name, field_name) in _GQL_CONNECTIONS or field_name == "pullRequest":
            return self._gql_checks_field(field_name, source, arguments)
        if type_name == "Repository" and field_name in ("issues", "label"):
            return self._gql_repository_field(field_name, source["_repo"], arguments)
        return source[field_name]

    def _gql_repository_field(self, field_name: str, r: _Repo, arguments: Mapping[str, Any]) -> Any:
        """``Repository.label`` (None if there is none) and ``Repository.issues``."""
        if field_name == "issues":
            return self._gql_issues(r, arguments)
        label = r.labels.get(str(arguments["name"]).lower())
        return None if label is None else self._gql_label(label)

    def _gql_checks_field(self, field_name: str, source: Any, arguments: Mapping[str, Any]) -> Any:
        """``Repository.pullRequest`` and the connections below it (commits, checks)."""
        if field_name == "pullRequest":
            return self._gql_pull_request(source["_repo"], int(arguments["number"]))
        items = source[f"_{field_name}"]
        if field_name == "checkRuns":
            items = _filter_runs(items, arguments.get("filterBy"))
        return _connection(items, arguments)

    def _gql_pull_request(self, r: _Repo, number: int) -> dict[str, Any] | None:
        """The GraphQL ``PullRequest`` of ``number``, its head commit's checks included."""
        pull = r.pulls.get(number)
        if pull is None:
            raise _FieldError(
                "NOT_FOUND", f"Could not resolve to a PullRequest with the number of {number}."
            )
        issue = r.issues[number]
        suites = [
            {
                "status": suite.status.upper(),
                "conclusion": suite.conclusion.upper() if suite.conclusion else None,
                "app": {"name": _APP_NAMES.get(suite.app, suite.app), "slug": suite.app},
                "url": f"{self.url}/{r.full_name}/commit/{suite.head_sha}/checks",
                "_checkRuns": [
                    {
                        "name": run.name,
                        "status": run.status.upper(),
                        "conclusion": run.conclusion.upper() if run.conclusion else None,
                        "detailsUrl": run.details_url,
                        "url": run.details_url,
                    }
                    for run in suite.runs
                ],
            }
            for suite in r.check_suites.get(pull.head_sha, [])
        ]
        contexts = [
            {"context": s.context, "state": s.state.upper(), "targetUrl": s.target_url}
            for s in self._latest_statuses(r, pull.head_sha)
        ]
        commit = {
            "oid": pull.head_sha,
            "_checkSuites": suites,
            "status": None
            if not contexts
            else {"state": _combined(contexts), "contexts": contexts},
        }
        return {
            "number": number,
            "state": "MERGED" if pull.merged else issue.state.upper(),
            "merged": pull.merged,
            "mergeQueueEntry": self._gql_queue_entry(r, number),
            "headRefOid": pull.head_sha,
            "headRefName": pull.head_ref,
            "isCrossRepository": pull.head_repo is not None,
            "authorAssociation": self._association(r, issue, pull),
            "_commits": [{"commit": commit}],
        }

    def _gql_queue_entry(self, r: _Repo, number: int) -> dict[str, Any] | None:
        """``PullRequest.mergeQueueEntry``: its live entry in the merge queue, or None
        (never queued, merged, or ejected: GitHub then has no entry)."""
        queue = self._live_queue(r)
        for position, entry in enumerate(queue, start=1):
            if entry.number == number:
                return {
                    "id": _node_id("MQE_", entry.id),
                    "position": position,
                    "state": "QUEUED",
                    "enqueuedAt": entry.enqueued_at,
                }
        return None

    def _gql_repository(self, owner: str, name: str) -> dict[str, Any]:
        wanted = f"{owner}/{name}".lower()
        for r in self._repos.values():
            if r.full_name.lower() == wanted and self._visible(r):
                return {
                    "_repo": r,
                    "id": _node_id("R_", r.id),
                    "name": r.name,
                    "nameWithOwner": r.full_name,
                }
        raise _FieldError(
            "NOT_FOUND", f"Could not resolve to a Repository with the name '{owner}/{name}'."
        )

    def _gql_user(self, login: str) -> dict[str, Any]:
        known = self._known_users().get(login.lower())
        if known is None:
            raise _FieldError(
                "NOT_FOUND", f"Could not resolve to a User with the login of '{login}'."
            )
        return {"id": _node_id("U_", _user_id(known)), "login": known}

    @staticmethod
    def _gql_label(label: StandInLabel) -> dict[str, Any]:
        return {
            "id": label.node_id,
            "name": label.name,
            "color": label.color,
            "description": label.description,
        }

    def _gql_issues(self, r: _Repo, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """``Repository.issues``: issues only (never pull requests), filtered, a page.

        ``states`` and ``labels`` filter as on GitHub (a label matches case-blind; any
        of several labels does); ``orderBy`` sorts (default: oldest first).
        """
        states = {str(s).lower() for s in arguments.get("states") or ()}
        wanted = {str(label).lower() for label in arguments.get("labels") or ()}
        matching = [
            issue
            for number, issue in sorted(r.issues.items())
            if number not in r.pulls
            and (not states or issue.state in states)
            and (not wanted or wanted & {label.lower() for label in issue.labels})
        ]
        order = arguments.get("orderBy") or {"field": "CREATED_AT", "direction": "ASC"}
        sort_by: dict[str, Callable[[StandInIssue], Any]] = {
            "CREATED_AT": lambda i: (i.created_at, i.number),
            "UPDATED_AT": lambda i: (i.updated_at, i.number),
            "COMMENTS": lambda i: (len(i.comments), i.number),
        }
        matching.sort(key=sort_by[order["field"]], reverse=order["direction"] == "DESC")
        return _connection([self._gql_issue(r, issue) for issue in matching], arguments)

    def _gql_issue(self, r: _Repo, issue: StandInIssue) -> dict[str, Any]:
        """The GraphQL ``Issue`` of ``issue`` (labels as a connection)."""
        return {
            "id": _node_id("I_", issue.id),
            "number": issue.number,
            "title": issue.title,
            "url": f"{self.url}/{r.full_name}/issues/{issue.number}",
            "createdAt": issue.created_at,
            "state": issue.state.upper(),
            "milestone": None
            if issue.milestone_title is None
            else {"title": issue.milestone_title, "dueOn": issue.milestone_due_on},
            "_labels": [self._gql_label(self._label(r, name)) for name in issue.labels],
        }

    @staticmethod
    def _not_found(node_id: Any) -> _FieldError:
        return _FieldError(
            "NOT_FOUND", f"Could not resolve to a node with the global id of '{node_id}'."
        )

    def _node_issue(self, node_id: Any) -> tuple[_Repo, StandInIssue]:
        """The issue of an issue's or a pull request's node id."""
        decoded = _decode_node_id(node_id)
        if decoded is not None and decoded[0] in ("I_", "PR_"):
            kind, number = decoded
            for r in filter(self._visible, self._repos.values()):
                for issue in r.issues.values():
                    pull = r.pulls.get(issue.number)
                    if (kind == "I_" and issue.id == number) or (
                        kind == "PR_" and pull is not None and pull.id == number
                    ):
                        return r, issue
        raise self._not_found(node_id)

    def _node_label(self, r: _Repo, node_id: Any) -> StandInLabel:
        """A label of ``r`` by node id."""
        decoded = _decode_node_id(node_id)
        for label in r.labels.values():
            if decoded == ("LA_", label.id):
                return label
        raise self._not_found(node_id)

    def _node_user(self, node_id: Any) -> str:
        """A known user's login by node id."""
        decoded = _decode_node_id(node_id)
        for login in self._known_users().values():
            if decoded == ("U_", _user_id(login)):
                return login
        raise self._not_found(node_id)

    def _gql_add_labels(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["labelableId"])
        labels = [self._node_label(r, node_id) for node_id in data["labelIds"]]
        present = {name.lower() for name in issue.labels}
        for label in labels:
            if label.name.lower() not in present:
                issue.labels.append(label.name)
                issue.label_events.append(("labeled", label.name))
                present.add(label.name.lower())
        issue.updated_at = self._now()
        return {}

    def _gql_remove_labels(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["labelableId"])
        removed = {self._node_label(r, node_id).name.lower() for node_id in data["labelIds"]}
        kept = [name for name in issue.labels if name.lower() not in removed]
        self._relabel(issue, kept)
        issue.updated_at = self._now()
        return {}

    def _gql_add_comment(self, data: Mapping[str, Any]) -> dict[str, Any]:
        _, issue = self._node_issue(data["subjectId"])
        comment = StandInComment(self._new_id(), str(data["body"]), "valine[bot]", self._now())
        issue.comments.append(comment)
        issue.updated_at = comment.created_at
        return {}

    def _gql_add_assignees(self, data: Mapping[str, Any]) -> dict[str, Any]:
        _, issue = self._node_issue(data["assignableId"])
        logins = [self._node_user(node_id) for node_id in data["assigneeIds"]]
        issue.assignees = list(dict.fromkeys([*issue.assignees, *logins]))
        issue.updated_at = self._now()
        return {}

    def _gql_close_issue(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["issueId"])
        if issue.number in r.pulls:
            raise _FieldError(
                "NOT_FOUND",
                f"Could not resolve to an Issue with the global id of '{data['issueId']}'.",
            )
        reason = str(data.get("stateReason") or "COMPLETED").lower()
        self._set_state(issue, "closed", reason)
        return {}

    def _gql_create_label(self, data: Mapping[str, Any]) -> dict[str, Any]:
        decoded = _decode_node_id(data["repositoryId"])
        r = next((r for r in self._repos.values() if decoded == ("R_", r.id)), None)
        if r is None or not self._visible(r):
            raise self._not_found(data["repositoryId"])
        name, color = str(data["name"]), str(data["color"])
        if not name.strip():
            raise _FieldError("UNPROCESSABLE", "Name can't be blank")
        if name.lower() in r.labels:
            raise _FieldError("UNPROCESSABLE", "Name has already been taken")
        if not re.fullmatch(r"[0-9A-Fa-f]{6}", color):
            raise _FieldError("UNPROCESSABLE", "Color is invalid")
        label = self._label(r, name)
        label.color, label.description = color.lower(), data.get("description")
        return {"label": self._gql_label(label)}

    def _gql_enqueue(self, data: Mapping[str, Any]) -> dict[str, Any]:
        r, issue = self._node_issue(data["pullRequestId"])
        pull = r.pulls.get(issue.number)
        if pull is None:
            raise self._not_found(data["pullRequestId"])
        if pull.merged or issue.state != "open":
            raise _FieldError("UNPROCESSABLE", NOT_ENQUEUEABLE_MESSAGE)
        if not r.merge_queue:
            raise _FieldError("UNPROCESSABLE", NO_MERGE_QUEUE_MESSAGE)
        expected = data.get("expectedHeadOid")
        if expected is not None and expected != pull.head_sha:
            raise _FieldError("UNPROCESSABLE", HEAD_MOVED_MESSAGE)
        queue = self._live_queue(r)
        entry = next((e for e in queue if e.number == pull.number), None)
        if entry is None:
            entry = StandInQueueEntry(self._new_id(), pull.number, pull.head_sha, self._now())
            if data.get("jump"):
                r.queue.insert(0, entry)
            else:
                r.queue.append(entry)
        position = 1 + r.queue.index(entry)
        node = {
            "id": _node_id("MQE_", entry.id),
            "position": position,
            "state": "QUEUED",
            "enqueuedAt": entry.enqueued_at,
        }
        return {"mergeQueueEntry": node}


_GQL_MUTATIONS: Mapping[str, Callable[[GraphQLAPI, Mapping[str, Any]], dict[str, Any]]] = {
    "addLabelsToLabelable": GraphQLAPI._gql_add_labels,
    "removeLabelsFromLabelable": GraphQLAPI._gql_remove_labels,
    "addComment": GraphQLAPI._gql_add_comment,
    "addAssigneesToAssignable": GraphQLAPI._gql_add_assignees,
    "closeIssue": GraphQLAPI._gql_close_issue,
    "createLabel": GraphQLAPI._gql_create_label,
    "enqueuePullRequest": GraphQLAPI._gql_enqueue,
}
