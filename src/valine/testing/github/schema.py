"""The GraphQL schema the GitHub stand-in executes documents on (with graphql-core).

Two schemas, both read by graphql-core:

* :data:`SERVED_SDL` -- the part of GitHub's schema the stand-in serves: every type,
  field, argument, input field and enum value written exactly as in GitHub's schema
  (tests/contract/test_github_graphql.py compares them one by one), so a document valid
  on it is valid on GitHub's;
* GitHub's published schema, the introspection result ``schema.json`` of the npm package
  ``@octokit/graphql-schema``, installed by ``make material`` into ``.cache/material``
  (not in the repository, not in an installed package).

When the published schema is there (every ``make test`` run), documents are validated
against it, as GitHub validates them, and a valid document that selects a field outside
the served part is refused with an error naming it, before anything runs. Without it (a
fresh clone running ``make demo``, or ``valine simulate``), documents are validated
against the served part itself: what the client sends is answered the same way; only a
field GitHub has and the stand-in does not serve gets graphql-core's "Cannot query
field" instead. :attr:`Schemas.source` says which one is in use. Loading the published
schema takes about 0.2 s (once a process); a document is parsed and validated once, then
taken from a cache.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    build_client_schema,
    build_schema,
    parse,
    validate,
    visit,
)

#: Where ``make material`` installs GitHub's published schema (an editable install's tree).
PUBLISHED_SCHEMA = (
    Path(__file__).resolve().parents[4]
    / ".cache/material/node_modules/@octokit/graphql-schema/schema.json"
)
#: How many distinct documents a schema keeps parsed and validated.
_CACHED_DOCUMENTS = 512

SERVED_SDL = """
type Query {
  repository(owner: String!, name: String!, followRenames: Boolean): Repository
  user(login: String!): User
}

type Mutation {
  addLabelsToLabelable(input: AddLabelsToLabelableInput!): AddLabelsToLabelablePayload
  removeLabelsFromLabelable(
    input: RemoveLabelsFromLabelableInput!
  ): RemoveLabelsFromLabelablePayload
  addComment(input: AddCommentInput!): AddCommentPayload
  addAssigneesToAssignable(input: AddAssigneesToAssignableInput!): AddAssigneesToAssignablePayload
  closeIssue(input: CloseIssueInput!): CloseIssuePayload
  createLabel(input: CreateLabelInput!): CreateLabelPayload
  enqueuePullRequest(input: EnqueuePullRequestInput!): EnqueuePullRequestPayload
}

type Repository {
  id: ID!
  name: String!
  nameWithOwner: String!
  label(name: String!): Label
  pullRequest(number: Int!): PullRequest
  issues(
    orderBy: IssueOrder
    labels: [String!]
    states: [IssueState!]
    filterBy: IssueFilters
    after: String
    before: String
    first: Int
    last: Int
  ): IssueConnection!
}

type IssueConnection {
  nodes: [Issue]
  totalCount: Int!
  pageInfo: PageInfo!
}

type Issue {
  id: ID!
  number: Int!
  title: String!
  url: URI!
  createdAt: DateTime!
  state: IssueState!
  milestone: Milestone
  labels(orderBy: LabelOrder, after: String, before: String, first: Int, last: Int): LabelConnection
}

type Milestone {
  title: String!
  dueOn: DateTime
}

type LabelConnection {
  nodes: [Label]
  totalCount: Int!
  pageInfo: PageInfo!
}

type PullRequest {
  number: Int!
  headRefOid: GitObjectID!
  headRefName: String!
  isCrossRepository: Boolean!
  authorAssociation: CommentAuthorAssociation!
  state: PullRequestState!
  merged: Boolean!
  mergeQueueEntry: MergeQueueEntry
  commits(after: String, before: String, first: Int, last: Int): PullRequestCommitConnection!
}

type PullRequestCommitConnection {
  nodes: [PullRequestCommit]
  totalCount: Int!
  pageInfo: PageInfo!
}

type PullRequestCommit {
  commit: Commit!
}

type Commit {
  oid: GitObjectID!
  checkSuites(
    after: String, before: String, first: Int, last: Int, filterBy: CheckSuiteFilter
  ): CheckSuiteConnection
  status: Status
}

type CheckSuiteConnection {
  nodes: [CheckSuite]
  totalCount: Int!
  pageInfo: PageInfo!
}

type CheckSuite {
  status: CheckStatusState!
  conclusion: CheckConclusionState
  app: App
  url: URI!
  checkRuns(
    after: String, before: String, first: Int, last: Int, filterBy: CheckRunFilter
  ): CheckRunConnection
}

type App {
  name: String!
  slug: String!
}

type CheckRunConnection {
  nodes: [CheckRun]
  totalCount: Int!
  pageInfo: PageInfo!
}

type CheckRun {
  name: String!
  status: CheckStatusState!
  conclusion: CheckConclusionState
  detailsUrl: URI
  url: URI!
}

type Status {
  state: StatusState!
  contexts: [StatusContext!]!
}

type StatusContext {
  context: String!
  state: StatusState!
  targetUrl: URI
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type Label {
  id: ID!
  name: String!
  color: String!
  description: String
}

type User {
  id: ID!
  login: String!
}

type MergeQueueEntry {
  id: ID!
  position: Int!
  state: MergeQueueEntryState!
  enqueuedAt: DateTime!
}

type AddLabelsToLabelablePayload {
  clientMutationId: String
}

type RemoveLabelsFromLabelablePayload {
  clientMutationId: String
}

type AddCommentPayload {
  clientMutationId: String
}

type AddAssigneesToAssignablePayload {
  clientMutationId: String
}

type CloseIssuePayload {
  clientMutationId: String
}

type CreateLabelPayload {
  clientMutationId: String
  label: Label
}

type EnqueuePullRequestPayload {
  clientMutationId: String
  mergeQueueEntry: MergeQueueEntry
}

input IssueOrder {
  field: IssueOrderField!
  direction: OrderDirection!
}

input IssueFilters {
  assignee: String
  createdBy: String
  labels: [String!]
  mentioned: String
  milestone: String
  milestoneNumber: String
  since: DateTime
  states: [IssueState!]
  viewerSubscribed: Boolean
}

input LabelOrder {
  field: LabelOrderField!
  direction: OrderDirection!
}

input CheckRunFilter {
  checkType: CheckRunType
  appId: Int
  checkName: String
  status: CheckStatusState
  statuses: [CheckStatusState!]
  conclusions: [CheckConclusionState!]
}

input CheckSuiteFilter {
  appId: Int
  checkName: String
}

input AddLabelsToLabelableInput {
  clientMutationId: String
  labelIds: [ID!]!
  labelableId: ID!
}

input RemoveLabelsFromLabelableInput {
  clientMutationId: String
  labelIds: [ID!]!
  labelableId: ID!
}

input AddCommentInput {
  body: String!
  clientMutationId: String
  subjectId: ID!
}

input AddAssigneesToAssignableInput {
  assignableId: ID!
  assigneeIds: [ID!]!
  clientMutationId: String
}

input CloseIssueInput {
  clientMutationId: String
  issueId: ID!
  stateReason: IssueClosedStateReason
}

input CreateLabelInput {
  clientMutationId: String
  color: String!
  description: String
  name: String!
  repositoryId: ID!
}

input EnqueuePullRequestInput {
  clientMutationId: String
  expectedHeadOid: GitObjectID
  jump: Boolean
  pullRequestId: ID!
}

enum IssueState {
  OPEN
  CLOSED
}

enum PullRequestState {
  OPEN
  CLOSED
  MERGED
}

enum IssueOrderField {
  CREATED_AT
  UPDATED_AT
  COMMENTS
}

enum OrderDirection {
  ASC
  DESC
}

enum LabelOrderField {
  NAME
  CREATED_AT
}

enum CheckRunType {
  ALL
  LATEST
}

enum CheckStatusState {
  REQUESTED
  QUEUED
  IN_PROGRESS
  COMPLETED
  WAITING
  PENDING
}

enum CheckConclusionState {
  ACTION_REQUIRED
  TIMED_OUT
  CANCELLED
  FAILURE
  SUCCESS
  NEUTRAL
  SKIPPED
  STARTUP_FAILURE
  STALE
}

enum StatusState {
  EXPECTED
  ERROR
  FAILURE
  PENDING
  SUCCESS
}

enum CommentAuthorAssociation {
  MEMBER
  OWNER
  MANNEQUIN
  COLLABORATOR
  CONTRIBUTOR
  FIRST_TIME_CONTRIBUTOR
  FIRST_TIMER
  NONE
}

enum IssueClosedStateReason {
  COMPLETED
  NOT_PLANNED
}

enum MergeQueueEntryState {
  AWAITING_CHECKS
  LOCKED
  MERGEABLE
  QUEUED
  UNMERGEABLE
}

scalar DateTime

scalar GitObjectID

scalar URI
"""


@dataclass
class Schemas:
    """The schema documents run on, the served part, and which one validates."""

    executable: GraphQLSchema
    served: GraphQLSchema
    #: ``"published"`` (GitHub's schema from ``.cache``) or ``"served"`` (the served part).
    source: str
    _prepared: dict[str, tuple[DocumentNode | None, list[dict[str, Any]]]] = field(
        default_factory=dict, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def prepare(self, query: str) -> tuple[DocumentNode | None, list[dict[str, Any]]]:
        """The parsed document and GitHub's refusals of it (none: it may run), cached."""
        with self._lock:
            known = self._prepared.get(query)
        if known is not None:
            return known
        prepared = self._check(query)
        with self._lock:
            if len(self._prepared) >= _CACHED_DOCUMENTS:
                self._prepared.clear()
            self._prepared[query] = prepared
        return prepared

    def _check(self, query: str) -> tuple[DocumentNode | None, list[dict[str, Any]]]:
        try:
            document = parse(query)
        except GraphQLError as error:
            return None, [dict(error.formatted)]
        errors = validate(self.executable, document)
        if not errors and self.executable is not self.served:
            errors = _unserved_fields(self.executable, self.served, document)
        return (None, [dict(e.formatted) for e in errors]) if errors else (document, [])


def load(published: Path | None = PUBLISHED_SCHEMA) -> Schemas:
    """GitHub's published schema if ``published`` exists, else the served part alone."""
    served = served_schema()
    if published is not None and published.is_file():
        return Schemas(published_schema(published), served, "published")
    return Schemas(served, served, "served")


@cache
def served_schema() -> GraphQLSchema:
    """The served part of GitHub's schema, built once."""
    return build_schema(SERVED_SDL)


@cache
def published_schema(path: Path) -> GraphQLSchema:
    """GitHub's schema from its introspection result at ``path``, built once a process.

    ``assume_valid``: graphql-core checks rules GitHub's schema predates (a deprecated
    field implementing an interface's field that is not); they do not matter for
    validating and executing documents.
    """
    introspection = json.loads(path.read_text())
    return build_client_schema(introspection, assume_valid=True)


def _unserved_fields(
    schema: GraphQLSchema, served: GraphQLSchema, document: DocumentNode
) -> list[GraphQLError]:
    """One error for every selected field GitHub has and the stand-in does not serve."""
    type_info = TypeInfo(schema)
    errors: list[GraphQLError] = []

    class Fields(Visitor):
        def enter_field(self, node: Any, *_args: Any) -> None:
            parent = type_info.get_parent_type()
            name = node.name.value
            if parent is None or name.startswith("__") or parent.name.startswith("__"):
                return
            mine = served.get_type(parent.name)
            fields = getattr(mine, "fields", None)
            if fields is None or name not in fields:
                errors.append(
                    GraphQLError(
                        f"Field '{name}' on type '{parent.name}' is in GitHub's schema but "
                        "the GitHub stand-in does not serve it",
                        node,
                        extensions={"code": "notServedByStandIn"},
                    )
                )

    visit(document, TypeInfoVisitor(type_info, Fields()))
    return errors
