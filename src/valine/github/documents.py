"""The GraphQL documents the GitHub client sends: each one request, built from values.

``issue_mutation`` relabels, comments, assigns and closes many issues in one mutation;
``checks_query`` reads the whole check picture (every suite, check run and commit status of
the head commit) of up to ``PULLS_PER_QUERY`` pull requests; ``ready_issues_query`` reads
one page of the ready issues with every node id ``/approve`` needs; ``id_fields`` looks up
label and user ids. ``tests/contract/test_github_graphql.py`` validates each against
GitHub's published schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from valine.ports import IssueUpdate


def is_mutation(document: str) -> bool:
    """True for a GraphQL mutation document (it changes something on GitHub)."""
    return document.lstrip().startswith("mutation")


def issue_mutation(
    updates: Sequence[IssueUpdate],
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The mutation document and variables applying ``updates`` in order, and the node id
    of the issue each field (by its alias) changes."""
    declarations: list[str] = []
    fields: list[str] = []
    variables: dict[str, Any] = {}
    owners: dict[str, str] = {}

    def add(kind: str, input_type: str, field_name: str, value: dict[str, Any]) -> None:
        name = f"{kind}{len(fields)}"
        declarations.append(f"${name}: {input_type}!")
        fields.append(f"{name}: {field_name}(input: ${name}) {{ clientMutationId }}")
        variables[name] = value
        owners[name] = current

    for u in updates:
        current = u.node_id
        if u.remove_labels:
            add(
                "r",
                "RemoveLabelsFromLabelableInput",
                "removeLabelsFromLabelable",
                {"labelableId": u.node_id, "labelIds": list(u.remove_labels)},
            )
        if u.add_labels:
            add(
                "a",
                "AddLabelsToLabelableInput",
                "addLabelsToLabelable",
                {"labelableId": u.node_id, "labelIds": list(u.add_labels)},
            )
        if u.assignees:
            add(
                "s",
                "AddAssigneesToAssignableInput",
                "addAssigneesToAssignable",
                {"assignableId": u.node_id, "assigneeIds": list(u.assignees)},
            )
        if u.comment is not None:
            add("c", "AddCommentInput", "addComment", {"subjectId": u.node_id, "body": u.comment})
        if u.close:
            add("x", "CloseIssueInput", "closeIssue", {"issueId": u.node_id})
    return f"mutation({', '.join(declarations)}) {{ {' '.join(fields)} }}", variables, owners


#: Pull requests read by one ``pull_checks`` query (each asks for up to 100 suites of
#: 100 check runs: 10,000 nodes, well inside GitHub's 500,000 per query).
PULLS_PER_QUERY = 25
_PULL_CHECKS = (
    "number commits(last: 1) { nodes { commit { oid "
    "checkSuites(first: 100) { pageInfo { hasNextPage } nodes { status conclusion "
    "app { name } checkRuns(first: 100, filterBy: $latest) { pageInfo { hasNextPage } "
    "nodes { name status conclusion detailsUrl } } } } "
    "status { contexts { context state targetUrl } } } } }"
)


_PULL_QUEUE = "merged mergeQueueEntry { state } "


def checks_query(
    owner: str, name: str, numbers: Sequence[int], merge_queue: bool = False
) -> tuple[str, dict[str, Any]]:
    """The ``pull_checks`` query of ``numbers`` (aliases ``p0``, ``p1`` ...)."""
    declarations = ["$owner: String!", "$name: String!", "$latest: CheckRunFilter"]
    fields = []
    variables: dict[str, Any] = {"owner": owner, "name": name, "latest": {"checkType": "LATEST"}}
    selection = (_PULL_QUEUE if merge_queue else "") + _PULL_CHECKS
    for i, number in enumerate(numbers):
        declarations.append(f"$p{i}: Int!")
        fields.append(f"p{i}: pullRequest(number: $p{i}) {{ {selection} }}")
        variables[f"p{i}"] = number
    document = (
        f"query({', '.join(declarations)}) {{ repository(owner: $owner, name: $name) "
        f"{{ {' '.join(fields)} }} }}"
    )
    return document, variables


#: One page of ``Repository.issues`` as ``/plan`` reads it (issues only, never PRs).
_ISSUE_PAGE = (
    "issues(first: 100, after: $after, states: $open, labels: $ready) { "
    "pageInfo { hasNextPage endCursor } nodes { id number title url createdAt "
    "milestone { dueOn } labels(first: 100) { pageInfo { hasNextPage } nodes { name } } } }"
)


def ready_issues_query(
    owner: str,
    name: str,
    label: str,
    labels: Sequence[str] = (),
    logins: Sequence[str] = (),
    *,
    after: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """A page of open issues labelled ``label``; the first page also reads the node
    ids of the repository, of ``labels`` and of ``logins`` (aliases ``l0``, ``u0`` ...)."""
    declarations = [
        "$owner: String!",
        "$name: String!",
        "$ready: [String!]",
        "$open: [IssueState!]",
        "$after: String",
    ]
    variables: dict[str, Any] = {
        "owner": owner,
        "name": name,
        "ready": [label],
        "open": ["OPEN"],
        "after": after,
    }
    label_fields, user_fields = "", ""
    if after is None:
        label_fields, user_fields = id_fields(labels, logins, declarations, variables)
    document = (
        f"query({', '.join(declarations)}) {{ repository(owner: $owner, name: $name) "
        f"{{ id {label_fields} {_ISSUE_PAGE} }} {user_fields} }}"
    )
    return document, variables


def id_fields(
    labels: Sequence[str],
    logins: Sequence[str],
    declarations: list[str],
    variables: dict[str, Any],
) -> tuple[str, str]:
    """The ``label(name:)`` fields (inside ``repository``) and ``user(login:)`` fields
    (at the root) reading node ids; their variables are added to the two lists given."""
    label_fields = []
    for i, label in enumerate(labels):
        declarations.append(f"$l{i}: String!")
        variables[f"l{i}"] = label
        label_fields.append(f"l{i}: label(name: $l{i}) {{ id }}")
    user_fields = []
    for i, login in enumerate(logins):
        declarations.append(f"$u{i}: String!")
        variables[f"u{i}"] = login
        user_fields.append(f"u{i}: user(login: $u{i}) {{ id }}")
    return " ".join(label_fields), " ".join(user_fields)
