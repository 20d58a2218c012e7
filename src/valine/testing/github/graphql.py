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

Documents are parsed with :mod:`re` and a small recursive-descent parser; anything else
(fragments, directives, literal objects, fields or types outside that subset) is
answered with a GraphQL error, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


class _GraphQLError(Exception):
    """A document GitHub would refuse as a whole (syntax, validation, variables)."""

    def __init__(
        self,
        message: str,
        *,
        at: _Token | _Selection | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = None if at is None else at.line
        self.column = None if at is None else at.column
        self.extensions = extensions

    def as_json(self) -> dict[str, Any]:
        """The ``errors`` entry GitHub would send."""
        entry: dict[str, Any] = {"message": self.message}
        if self.line is not None:
            entry["locations"] = [{"line": self.line, "column": self.column}]
        if self.extensions:
            entry["extensions"] = self.extensions
        return entry


class _FieldError(Exception):
    """One field failed while running: it becomes ``null`` and an ``errors`` entry."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.type = error_type
        self.message = message


@dataclass(frozen=True)
class _Token:
    kind: str  # "punct", "name", "number", "string" or "eof"
    text: str
    line: int
    column: int


@dataclass(frozen=True)
class _Variable:
    """A ``$name`` reference in an argument."""

    name: str


@dataclass(frozen=True)
class _Selection:
    """One field of a selection set: ``alias: name(arguments) { selections }``."""

    alias: str | None
    name: str
    arguments: dict[str, Any]
    selections: tuple[_Selection, ...] | None
    line: int
    column: int

    @property
    def key(self) -> str:
        """The key of the field in the answer."""
        return self.alias or self.name


@dataclass(frozen=True)
class _Operation:
    """The one operation of a document."""

    kind: str  # "query" or "mutation"
    variables: dict[str, str]  # name -> declared type, e.g. "[ID!]!"
    selections: tuple[_Selection, ...]


_GQL_TOKEN = re.compile(
    r"(?P<skip>[\s,\ufeff]+|#[^\n\r]*)"
    r"|(?P<spread>\.\.\.)"
    r"|(?P<punct>[!$&()\[\]{}:=@|])"
    r"|(?P<name>[_A-Za-z][_0-9A-Za-z]*)"
    r"|(?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"
    r'|(?P<block>""")'
    r'|(?P<string>"(?:[^"\\\n\r]|\\(?:["\\/bfnrt]|u[0-9A-Fa-f]{4}))*")'
)


def _unsupported(what: str, token: _Token) -> _GraphQLError:
    return _GraphQLError(
        f"The GitHub stand-in does not support {what}",
        at=token,
    )


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, line, line_start = 0, 1, 0
    while position < len(source):
        match = _GQL_TOKEN.match(source, position)
        column = position - line_start + 1
        if match is None:
            where = _Token("unknown", source[position], line, column)
            raise _GraphQLError(f'Parse error on "{where.text}" at [{line}, {column}]', at=where)
        kind = match.lastgroup or "skip"
        text = match.group()
        if kind == "spread":
            raise _unsupported("fragments", _Token(kind, text, line, column))
        if kind == "block":
            raise _unsupported("block strings", _Token(kind, text, line, column))
        if kind != "skip":
            tokens.append(_Token(kind, text, line, column))
        for newline in re.finditer(r"\r\n|[\n\r]", text):
            line, line_start = line + 1, position + newline.end()
        position = match.end()
    column = position - line_start + 1
    tokens.append(_Token("eof", "", line, column))
    return tokens


class _Parser:
    """Recursive descent over the tokens of one executable document (no fragments)."""

    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.index = 0

    def peek(self, text: str | None = None) -> bool:
        token = self.tokens[self.index]
        return token.kind != "eof" and (text is None or token.text == text)

    def take(self, kind: str | None = None, text: str | None = None) -> _Token:
        token = self.tokens[self.index]
        if token.kind == "eof":
            raise _GraphQLError("Unexpected end of document", at=token)
        if (kind is not None and token.kind != kind) or (text is not None and token.text != text):
            raise _GraphQLError(
                f'Parse error on "{token.text}" ({token.kind.upper()}) '
                f"at [{token.line}, {token.column}]",
                at=token,
            )
        self.index += 1
        return token

    def document(self) -> _Operation:
        operation = self.operation()
        token = self.tokens[self.index]
        if token.kind != "eof":
            if token.text in ("query", "mutation", "subscription", "fragment", "{"):
                raise _unsupported("documents with several definitions", token)
            self.take("eof")
        return operation

    def operation(self) -> _Operation:
        token = self.tokens[self.index]
        variables: dict[str, str] = {}
        if token.text == "{":
            kind = "query"
        elif token.kind == "name" and token.text in ("query", "mutation"):
            kind = self.take().text
            if self.tokens[self.index].kind == "name":
                self.take("name")  # the operation's name
            if self.peek("("):
                variables = self.variable_definitions()
            if self.peek("@"):
                raise _unsupported("directives", self.tokens[self.index])
        elif token.text in ("subscription", "fragment"):
            raise _unsupported(f"{token.text}s", token)
        else:
            self.take("punct", "{")
            raise AssertionError("unreachable")  # take() raised
        return _Operation(kind, variables, self.selection_set())

    def variable_definitions(self) -> dict[str, str]:
        self.take("punct", "(")
        variables: dict[str, str] = {}
        while True:
            dollar = self.take("punct", "$")
            name = self.take("name").text
            self.take("punct", ":")
            type_text = self.type_reference()
            if self.peek("="):
                raise _unsupported("default values", self.tokens[self.index])
            if self.peek("@"):
                raise _unsupported("directives", self.tokens[self.index])
            if name in variables:
                raise _GraphQLError(
                    f'There can be only one variable named "{name}"',
                    at=dollar,
                )
            variables[name] = type_text
            if self.peek(")"):
                break
        self.take("punct", ")")
        return variables

    def type_reference(self) -> str:
        if self.peek("["):
            self.take()
            text = f"[{self.type_reference()}]"
            self.take("punct", "]")
        else:
            text = self.take("name").text
        if self.peek("!"):
            self.take()
            text += "!"
        return text

    def selection_set(self) -> tuple[_Selection, ...]:
        self.take("punct", "{")
        selections = [self.selection()]
        while not self.peek("}"):
            selections.append(self.selection())
        self.take("punct", "}")
        return tuple(selections)

    def selection(self) -> _Selection:
        first = self.take("name")
        alias, name = None, first.text
        if self.peek(":"):
            self.take()
            alias, name = first.text, self.take("name").text
        arguments: dict[str, Any] = {}
        if self.peek("("):
            self.take()
            while True:
                argument = self.take("name")
                self.take("punct", ":")
                if argument.text in arguments:
                    raise _GraphQLError(
                        f'There can be only one argument named "{argument.text}"',
                        at=argument,
                    )
                arguments[argument.text] = self.value()
                if self.peek(")"):
                    break
            self.take("punct", ")")
        if self.peek("@"):
            raise _unsupported("directives", self.tokens[self.index])
        selections = self.selection_set() if self.peek("{") else None
        return _Selection(alias, name, arguments, selections, first.line, first.column)

    def value(self) -> Any:
        token = self.tokens[self.index]
        if token.text == "$":
            self.take()
            return _Variable(self.take("name").text)
        if token.kind == "string":
            self.take()
            return json.loads(token.text)
        if token.kind == "number":
            self.take()
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
        if token.kind == "name" and token.text in ("true", "false", "null"):
            self.take()
            return {"true": True, "false": False, "null": None}[token.text]
        if token.text in ("[", "{") or token.kind == "name":
            raise _unsupported("literal lists, objects and enums (pass them as variables)", token)
        self.take("name")
        raise AssertionError("unreachable")  # take() raised


#: Input object types: field -> type, as in GitHub's schema (``@octokit/graphql-schema``'s
#: ``schema.json``, which its ``validate`` uses; the contract tests compare the two).
_GQL_INPUTS: dict[str, dict[str, str]] = {
    "CheckRunFilter": {
        "checkType": "CheckRunType",
        "appId": "Int",
        "checkName": "String",
        "status": "CheckStatusState",
        "statuses": "[CheckStatusState!]",
        "conclusions": "[CheckConclusionState!]",
    },
    "CheckSuiteFilter": {"appId": "Int", "checkName": "String"},
    "IssueOrder": {"field": "IssueOrderField!", "direction": "OrderDirection!"},
    "AddLabelsToLabelableInput": {
        "clientMutationId": "String",
        "labelIds": "[ID!]!",
        "labelableId": "ID!",
    },
    "RemoveLabelsFromLabelableInput": {
        "clientMutationId": "String",
        "labelIds": "[ID!]!",
        "labelableId": "ID!",
    },
    "AddCommentInput": {"body": "String!", "clientMutationId": "String", "subjectId": "ID!"},
    "AddAssigneesToAssignableInput": {
        "assignableId": "ID!",
        "assigneeIds": "[ID!]!",
        "clientMutationId": "String",
    },
    "CloseIssueInput": {
        "clientMutationId": "String",
        "issueId": "ID!",
        "stateReason": "IssueClosedStateReason",
    },
    "CreateLabelInput": {
        "clientMutationId": "String",
        "color": "String!",
        "description": "String",
        "name": "String!",
        "repositoryId": "ID!",
    },
    "EnqueuePullRequestInput": {
        "clientMutationId": "String",
        "expectedHeadOid": "GitObjectID",
        "jump": "Boolean",
        "pullRequestId": "ID!",
    },
}


_GQL_ENUMS: dict[str, tuple[str, ...]] = {
    "IssueState": ("OPEN", "CLOSED"),
    "PullRequestState": ("OPEN", "CLOSED", "MERGED"),
    "IssueOrderField": ("CREATED_AT", "UPDATED_AT", "COMMENTS"),
    "OrderDirection": ("ASC", "DESC"),
    "CheckRunType": ("ALL", "LATEST"),
    "CheckStatusState": ("REQUESTED", "QUEUED", "IN_PROGRESS", "COMPLETED", "WAITING", "PENDING"),
    "CheckConclusionState": (
        "ACTION_REQUIRED",
        "TIMED_OUT",
        "CANCELLED",
        "FAILURE",
        "SUCCESS",
        "NEUTRAL",
        "SKIPPED",
        "STARTUP_FAILURE",
        "STALE",
    ),
    "StatusState": ("EXPECTED", "ERROR", "FAILURE", "PENDING", "SUCCESS"),
    "CommentAuthorAssociation": (
        "MEMBER",
        "OWNER",
        "MANNEQUIN",
        "COLLABORATOR",
        "CONTRIBUTOR",
        "FIRST_TIME_CONTRIBUTOR",
        "FIRST_TIMER",
        "NONE",
    ),
    "IssueClosedStateReason": ("COMPLETED", "NOT_PLANNED"),
    "MergeQueueEntryState": (
        "AWAITING_CHECKS",
        "LOCKED",
        "MERGEABLE",
        "QUEUED",
        "UNMERGEABLE",
    ),
}


_GQL_SCALARS = frozenset({"Boolean", "DateTime", "GitObjectID", "ID", "Int", "String", "URI"})


_PAGE = {"after": "String", "before": "String", "first": "Int", "last": "Int"}


#: Connection fields the stand-in cuts with ``first`` / ``last``.
_GQL_CONNECTIONS = frozenset(
    {
        ("PullRequest", "commits"),
        ("Commit", "checkSuites"),
        ("CheckSuite", "checkRuns"),
        ("Issue", "labels"),
    }
)
_PAYLOAD: dict[str, tuple[str, dict[str, str]]] = {"clientMutationId": ("String", {})}


#: Output object types: field -> (type, arguments). A subset of GitHub's schema.
_GQL_OBJECTS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "Query": {
        "repository": (
            "Repository",
            {"owner": "String!", "name": "String!", "followRenames": "Boolean"},
        ),
        "user": ("User", {"login": "String!"}),
    },
    "Mutation": {
        "addLabelsToLabelable": (
            "AddLabelsToLabelablePayload",
            {"input": "AddLabelsToLabelableInput!"},
        ),
        "removeLabelsFromLabelable": (
            "RemoveLabelsFromLabelablePayload",
            {"input": "RemoveLabelsFromLabelableInput!"},
        ),
        "addComment": ("AddCommentPayload", {"input": "AddCommentInput!"}),
        "addAssigneesToAssignable": (
            "AddAssigneesToAssignablePayload",
            {"input": "AddAssigneesToAssignableInput!"},
        ),
        "closeIssue": ("CloseIssuePayload", {"input": "CloseIssueInput!"}),
        "createLabel": ("CreateLabelPayload", {"input": "CreateLabelInput!"}),
        "enqueuePullRequest": ("EnqueuePullRequestPayload", {"input": "EnqueuePullRequestInput!"}),
    },
    "Repository": {
        "id": ("ID!", {}),
        "name": ("String!", {}),
        "nameWithOwner": ("String!", {}),
        "label": ("Label", {"name": "String!"}),
        "pullRequest": ("PullRequest", {"number": "Int!"}),
        "issues": (
            "IssueConnection!",
            {
                **_PAGE,
                "orderBy": "IssueOrder",
                "labels": "[String!]",
                "states": "[IssueState!]",
                "filterBy": "IssueFilters",
            },
        ),
    },
    "IssueConnection": {
        "nodes": ("[Issue]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "Issue": {
        "id": ("ID!", {}),
        "number": ("Int!", {}),
        "title": ("String!", {}),
        "url": ("URI!", {}),
        "createdAt": ("DateTime!", {}),
        "state": ("IssueState!", {}),
        "milestone": ("Milestone", {}),
        "labels": ("LabelConnection", {**_PAGE, "orderBy": "LabelOrder"}),
    },
    "Milestone": {"title": ("String!", {}), "dueOn": ("DateTime", {})},
    "LabelConnection": {
        "nodes": ("[Label]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "PullRequest": {
        "number": ("Int!", {}),
        "headRefOid": ("GitObjectID!", {}),
        "headRefName": ("String!", {}),
        "isCrossRepository": ("Boolean!", {}),
        "authorAssociation": ("CommentAuthorAssociation!", {}),
        "state": ("PullRequestState!", {}),
        "merged": ("Boolean!", {}),
        "mergeQueueEntry": ("MergeQueueEntry", {}),
        "commits": ("PullRequestCommitConnection!", _PAGE),
    },
    "PullRequestCommitConnection": {
        "nodes": ("[PullRequestCommit]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "PullRequestCommit": {"commit": ("Commit!", {})},
    "Commit": {
        "oid": ("GitObjectID!", {}),
        "checkSuites": ("CheckSuiteConnection", {**_PAGE, "filterBy": "CheckSuiteFilter"}),
        "status": ("Status", {}),
    },
    "CheckSuiteConnection": {
        "nodes": ("[CheckSuite]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "CheckSuite": {
        "status": ("CheckStatusState!", {}),
        "conclusion": ("CheckConclusionState", {}),
        "app": ("App", {}),
        "url": ("URI!", {}),
        "checkRuns": ("CheckRunConnection", {**_PAGE, "filterBy": "CheckRunFilter"}),
    },
    "App": {"name": ("String!", {}), "slug": ("String!", {})},
    "CheckRunConnection": {
        "nodes": ("[CheckRun]", {}),
        "totalCount": ("Int!", {}),
        "pageInfo": ("PageInfo!", {}),
    },
    "CheckRun": {
        "name": ("String!", {}),
        "status": ("CheckStatusState!", {}),
        "conclusion": ("CheckConclusionState", {}),
        "detailsUrl": ("URI", {}),
        "url": ("URI!", {}),
    },
    "Status": {"state": ("StatusState!", {}), "contexts": ("[StatusContext!]!", {})},
    "StatusContext": {
        "context": ("String!", {}),
        "state": ("StatusState!", {}),
        "targetUrl": ("URI", {}),
    },
    "PageInfo": {
        "hasNextPage": ("Boolean!", {}),
        "hasPreviousPage": ("Boolean!", {}),
        "startCursor": ("String", {}),
        "endCursor": ("String", {}),
    },
    "Label": {
        "id": ("ID!", {}),
        "name": ("String!", {}),
        "color": ("String!", {}),
        "description": ("String", {}),
    },
    "User": {"id": ("ID!", {}), "login": ("String!", {})},
    "MergeQueueEntry": {
        "id": ("ID!", {}),
        "position": ("Int!", {}),
        "state": ("MergeQueueEntryState!", {}),
        "enqueuedAt": ("DateTime!", {}),
    },
    "AddLabelsToLabelablePayload": _PAYLOAD,
    "RemoveLabelsFromLabelablePayload": _PAYLOAD,
    "AddCommentPayload": _PAYLOAD,
    "AddAssigneesToAssignablePayload": _PAYLOAD,
    "CloseIssuePayload": _PAYLOAD,
    "CreateLabelPayload": {**_PAYLOAD, "label": ("Label", {})},
    "EnqueuePullRequestPayload": {**_PAYLOAD, "mergeQueueEntry": ("MergeQueueEntry", {})},
}


def _named_type(type_text: str) -> str:
    return type_text.strip("[]!")


def _parse_graphql(document: str) -> _Operation:
    """The operation of ``document``, validated against the served subset of the schema."""
    operation = _Parser(document).document()
    for name, type_text in operation.variables.items():
        if _named_type(type_text) not in {*_GQL_INPUTS, *_GQL_SCALARS, *_GQL_ENUMS}:
            raise _GraphQLError(f"{_named_type(type_text)} isn't a defined input type (on ${name})")
    used: set[str] = set()
    root = "Mutation" if operation.kind == "mutation" else "Query"
    _check_selections(root, operation.selections, operation, used)
    for name in operation.variables:
        if name not in used:
            raise _GraphQLError(
                f"Variable ${name} is declared by anonymous {operation.kind} but not used"
            )
    return operation


def _check_selections(
    type_name: str, selections: Sequence[_Selection], operation: _Operation, used: set[str]
) -> None:
    """Raise the first validation error of ``selections`` on ``type_name``."""
    seen: dict[str, _Selection] = {}
    for selection in selections:
        earlier = seen.setdefault(selection.key, selection)
        if earlier is not selection and (
            earlier.name != selection.name or earlier.arguments != selection.arguments
        ):
            raise _GraphQLError(
                f"Field '{selection.key}' has an argument conflict or returns different fields",
                at=selection,
            )
        parameters: dict[str, str]
        if selection.name == "__typename":
            field_type, parameters = "String!", {}
        elif selection.name in _GQL_OBJECTS[type_name]:
            field_type, parameters = _GQL_OBJECTS[type_name][selection.name]
        else:
            raise _GraphQLError(
                f"Field '{selection.name}' doesn't exist on type '{type_name}'",
                extensions={
                    "code": "undefinedField",
                    "typeName": type_name,
                    "fieldName": selection.name,
                },
                at=selection,
            )
        for argument, value in selection.arguments.items():
            if argument not in parameters:
                raise _GraphQLError(
                    f"Field '{selection.name}' doesn't accept argument '{argument}'", at=selection
                )
            _check_argument(
                selection, argument, value, parameters[argument], operation=operation, used=used
            )
        missing = [
            a for a, t in parameters.items() if t.endswith("!") and a not in selection.arguments
        ]
        if missing:
            raise _GraphQLError(
                f"Field '{selection.name}' is missing required arguments: {', '.join(missing)}",
                at=selection,
            )
        target = _named_type(field_type)
        if target in _GQL_OBJECTS:
            if selection.selections is None:
                raise _GraphQLError(
                    f"Field must have selections (field '{selection.name}' returns {target} "
                    f"but has no selections. Did you mean '{selection.name} {{ ... }}'?)",
                    at=selection,
                )
            _check_selections(target, selection.selections, operation, used)
        elif selection.selections is not None:
            raise _GraphQLError(
                f"Selections can't be made on scalars (field '{selection.name}' returns "
                f"{target} but has selections)",
                at=selection,
            )


def _check_argument(
    selection: _Selection,
    argument: str,
    value: Any,
    expected: str,
    *,
    operation: _Operation,
    used: set[str],
) -> None:
    """Raise if ``value`` cannot be passed as ``argument`` of type ``expected``."""
    if isinstance(value, _Variable):
        declared = operation.variables.get(value.name)
        if declared is None:
            raise _GraphQLError(
                f"Variable ${value.name} is used by anonymous {operation.kind} but not declared",
                at=selection,
            )
        used.add(value.name)
        if declared.rstrip("!") != expected.rstrip("!"):
            raise _GraphQLError(
                f"Type mismatch on variable ${value.name} and argument {argument} "
                f"({declared} / {expected})",
                at=selection,
            )
        if expected.endswith("!") and not declared.endswith("!"):
            raise _GraphQLError(
                f"Nullability mismatch on variable ${value.name} and argument {argument} "
                f"({declared} / {expected})",
                at=selection,
            )
        return
    problems = _coerce_problems(value, expected, [])
    if problems:
        raise _GraphQLError(
            f"Argument '{argument}' on Field '{selection.name}' has an invalid value "
            f"({json.dumps(value)}). Expected type '{expected}'.",
            at=selection,
        )


def _coerce_problems(value: Any, type_text: str, path: list[str | int]) -> list[dict[str, Any]]:
    """Why ``value`` is not a valid input of type ``type_text`` (empty if it is)."""
    if type_text.endswith("!") and value is None:
        return [{"path": path, "explanation": "Expected value to not be null"}]
    type_text = type_text.removesuffix("!")
    if value is None:
        return []
    if type_text.startswith("["):
        items = value if isinstance(value, list) else [value]  # a single value is a list of one
        return [
            problem
            for i, item in enumerate(items)
            for problem in _coerce_problems(item, type_text[1:-1], [*path, i])
        ]
    if type_text in _GQL_INPUTS:
        return _input_object_problems(value, type_text, path)
    return _leaf_problems(value, type_text, path)


def _input_object_problems(
    value: Any, type_text: str, path: list[str | int]
) -> list[dict[str, Any]]:
    """Why ``value`` is not a valid input object of type ``type_text``."""
    fields = _GQL_INPUTS[type_text]
    if not isinstance(value, dict):
        explanation = f"Expected {json.dumps(value)} to be a key-value object"
        return [{"path": path, "explanation": explanation}]
    problems = [
        {"path": [*path, key], "explanation": f"Field is not defined on {type_text}"}
        for key in value
        if key not in fields
    ]
    for key, field_type in fields.items():
        problems += _coerce_problems(value.get(key), field_type, [*path, key])
    return problems


def _leaf_problems(value: Any, type_text: str, path: list[str | int]) -> list[dict[str, Any]]:
    """Why ``value`` is not a valid enum value or scalar of type ``type_text``."""
    if type_text in _GQL_ENUMS:
        valid = value in _GQL_ENUMS[type_text]
        choices = ", ".join(_GQL_ENUMS[type_text])
        explanation = f"Expected {json.dumps(value)} to be one of: {choices}"
    else:
        number = isinstance(value, int) and not isinstance(value, bool)
        valid = {
            "String": isinstance(value, str),
            "GitObjectID": isinstance(value, str),
            "DateTime": isinstance(value, str),
            "ID": isinstance(value, str) or number,
            "Int": number,
            "Boolean": isinstance(value, bool),
        }[type_text]
        explanation = f"Could not coerce value {json.dumps(value)} to {type_text}"
    return [] if valid else [{"path": path, "explanation": explanation}]


def _coerce_variables(operation: _Operation, values: Mapping[str, Any]) -> dict[str, Any]:
    """The declared variables' values; raise GitHub's error for the first invalid one."""
    coerced: dict[str, Any] = {}
    for name, type_text in operation.variables.items():
        value = values.get(name)
        problems = _coerce_problems(value, type_text, [])
        if problems:
            message = f"Variable ${name} of type {type_text} was provided invalid value"
            details = [
                f"{'.'.join(str(p) for p in problem['path'])} ({problem['explanation']})"
                for problem in problems
                if problem["path"]
            ]
            if details:
                message += " for " + ", ".join(details)
            raise _GraphQLError(message, extensions={"value": value, "problems": problems})
        coerced[name] = value
    return coerced


class GraphQLAPI(GitHubState):
    """``POST /graphql`` (called with the lock held): validate, then run field by field."""

    def _graphql(
        self, _r: None, _params: dict[str, str], _query: Mapping[str, str], body: Json
    ) -> Answer:
        """``POST /graphql``: validate the whole document, then run it field by field."""
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _error(400, "A query attribute must be specified and must be a string.")
        values = body.get("variables")
        if values is None:
            values = {}
        if not isinstance(values, dict):
            return _error(400, "Variables must be an object.")
        try:
            operation = _parse_graphql(body["query"])
            variables = _coerce_variables(operation, values)
        except _GraphQLError as refusal:
            return 200, {"errors": [refusal.as_json()]}, {}
        root = "Mutation" if operation.kind == "mutation" else "Query"
        errors: list[dict[str, Any]] = []
        data = self._gql_object(
            root, None, operation.selections, path=[], variables=variables, errors=errors
        )
        answer: dict[str, Any] = {"data": data}
        if errors:
            answer["errors"] = errors
        return 200, answer, {}

    def _gql_object(
        self,
        type_name: str,
        source: Any,
        selections: Sequence[_Selection],
        *,
        path: list[str | int],
        variables: Mapping[str, Any],
        errors: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The selected fields of one object, in order (mutation fields run serially).

        A field selected twice under one key (validation made sure they agree) runs once.
        """
        result: dict[str, Any] = {}
        for selection in selections:
            key = selection.key
            if key in result:
                continue
            if selection.name == "__typename":
                result[key] = type_name
                continue
            field_type, _ = _GQL_OBJECTS[type_name][selection.name]
            arguments = {
                name: variables.get(value.name) if isinstance(value, _Variable) else value
                for name, value in selection.arguments.items()
            }
            try:
                value = self._gql_resolve(type_name, selection.name, source, arguments)
            except _FieldError as failure:
                errors.append(
                    {
                        "type": failure.type,
                        "path": [*path, key],
                        "locations": [{"line": selection.line, "column": selection.column}],
                        "message": failure.message,
                    }
                )
                result[key] = None
                continue
            target = _named_type(field_type)
            if value is None or target not in _GQL_OBJECTS:
                result[key] = value
            elif isinstance(value, list):
                assert selection.selections is not None  # validated
                result[key] = [
                    None
                    if item is None
                    else self._gql_object(
                        target,
                        item,
                        selection.selections,
                        path=[*path, key, i],
                        variables=variables,
                        errors=errors,
                    )
                    for i, item in enumerate(value)
                ]
            else:
                assert selection.selections is not None  # validated
                result[key] = self._gql_object(
                    target,
                    value,
                    selection.selections,
                    path=[*path, key],
                    variables=variables,
                    errors=errors,
                )
        return result

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
            if r.full_name.lower() == wanted:
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
            for r in self._repos.values():
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
        if r is None:
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
