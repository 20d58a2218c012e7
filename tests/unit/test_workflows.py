"""The CI/CD workflows and the OIDC template: the properties that keep deploys safe.

The workflows cannot run here; actionlint checks them in ``make lint``. These tests read
them and assert what must hold whatever else changes: deploy runs only after CI passed on
a push to main, credentials come only from OIDC, prod waits behind its environment, and
the role the template makes trusts exactly those jobs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTION = ROOT / ".github" / "actions" / "deploy-stage" / "action.yml"
OIDC = ROOT / "deploy" / "github-oidc.yaml"
BIN = Path(sys.executable).parent


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in document:
        document["on"] = document.pop(True)
    return document


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return _load(WORKFLOWS / "ci.yml")


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    return _load(WORKFLOWS / "deploy.yml")


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps = list(job.get("steps", []))
    for step in job.get("steps", []):
        if str(step.get("uses", "")).startswith("./.github/actions/deploy-stage"):
            steps += _load(ACTION)["runs"]["steps"]
    return steps


def test_ci_runs_make_test_on_pull_requests_and_pushes(ci: dict[str, Any]) -> None:
    assert "pull_request" in ci["on"]
    assert ci["on"]["push"]["branches"] == ["main"]
    (job,) = ci["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    steps = job["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert any(r.startswith("make test") for r in runs)
    setups = {s["uses"].split("@")[0]: s.get("with", {}) for s in steps if "uses" in s}
    assert setups["actions/setup-python"]["python-version"] == "3.11"
    assert setups["actions/setup-python"]["cache"] == "pip"
    assert setups["actions/setup-node"]["node-version"] == "20"
    assert setups["actions/setup-node"]["cache"] == "npm"
    assert setups["actions/setup-java"]["java-version"] == "17"
    assert ci["permissions"] == {"contents": "read"}


def test_deploy_cannot_run_before_ci_passes(ci: dict[str, Any], deploy: dict[str, Any]) -> None:
    # The only trigger is the completion of the CI workflow, on main.
    assert set(deploy["on"]) == {"workflow_run"}
    trigger = deploy["on"]["workflow_run"]
    assert trigger["workflows"] == [ci["name"]]
    assert trigger["types"] == ["completed"]
    assert trigger["branches"] == ["main"]
    jobs = deploy["jobs"]
    gated = {
        name
        for name, job in jobs.items()
        if "github.event.workflow_run.conclusion == 'success'" in job.get("if", "")
        and "github.event.workflow_run.event == 'push'" in job.get("if", "")
    }
    assert gated, "no job checks that CI succeeded on a push"

    def reaches_gate(name: str) -> bool:
        if name in gated:
            return True
        needs = jobs[name].get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        return bool(needs) and all(reaches_gate(n) for n in needs)

    for name in jobs:
        assert reaches_gate(name), f"job {name} can start without CI having passed"
    # Each job deploys the commit CI tested, not whatever main is by then.
    for job in jobs.values():
        checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
        assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha }}"


def test_prod_waits_for_dev_and_its_environment(deploy: dict[str, Any]) -> None:
    jobs = deploy["jobs"]
    assert jobs["prod"]["needs"] == "dev"
    assert jobs["prod"]["environment"]["name"] == "prod"
    assert jobs["dev"]["environment"]["name"] == "dev"
    # The environment names are what the role trusts (sub ...:environment:<Stage>).
    for stage in ("dev", "prod"):
        (step,) = [s for s in jobs[stage]["steps"] if "deploy-stage" in s.get("uses", "")]
        assert step["with"]["stage"] == stage


def test_credentials_come_only_from_oidc(deploy: dict[str, Any]) -> None:
    text = (WORKFLOWS / "deploy.yml").read_text() + ACTION.read_text()
    assert not re.search(r"aws-access-key-id|aws-secret-access-key|AWS_SECRET|secrets\.", text)
    # Only the deploy jobs may ask for an OIDC token; the workflow default is read-only.
    assert deploy["permissions"] == {"contents": "read"}
    for name, job in deploy["jobs"].items():
        assert job["permissions"]["id-token"] == "write", name
        assert set(job["permissions"]) == {"id-token", "contents"}
        logins = [
            s for s in _steps(job) if s.get("uses", "").startswith("aws-actions/configure-aws-")
        ]
        assert len(logins) == 1
        assert set(logins[0]["with"]) == {"role-to-assume", "role-session-name", "aws-region"}


def test_the_stage_steps_deploy_register_and_smoke_check(deploy: dict[str, Any]) -> None:
    runs = [s.get("run", "") for s in _steps(deploy["jobs"]["dev"])]
    order = [
        next(i for i, r in enumerate(runs) if needle in r)
        for needle in (
            "make deploy-check",
            "sam deploy",
            "valine register-commands",
            "scripts/smoke_check.py",
        )
    ]
    assert order == sorted(order)
    sam = next(r for r in runs if "sam deploy" in r)
    assert '--stack-name "valine-orchestrator-$STAGE"' in sam
    assert "--role-arn" in sam  # CloudFormation acts with the stage's own role
    assert "--no-confirm-changeset" in sam


def _oidc() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(OIDC))))


def test_the_oidc_template_is_cfn_lint_clean() -> None:
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(OIDC)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deploy_role_trusts_only_the_stages_environment() -> None:
    resources = _oidc()["Resources"]
    trust = resources["DeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    (statement,) = trust
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    equals = statement["Condition"]["StringEquals"]
    assert equals["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert equals["token.actions.githubusercontent.com:sub"] == {
        "Fn::Sub": "repo:${GitHubRepository}:environment:${Stage}"
    }
    assert "StringLike" not in statement["Condition"]  # no wildcards in the subject
    provider = resources["GitHubOidcProvider"]["Properties"]
    assert provider["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["ClientIdList"] == ["sts.amazonaws.com"]


def test_the_deploy_role_is_least_privilege() -> None:
    resources = _oidc()["Resources"]
    (policy,) = resources["DeployRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    for statement in statements:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        assert all(not a.endswith(":*") and a != "*" for a in actions), statement["Sid"]
        if statement["Resource"] == "*":
            assert actions == ["cloudformation:ValidateTemplate"], statement["Sid"]
    stack = next(s for s in statements if s["Sid"] == "ChangeTheStagesStack")
    assert stack["Resource"]["Fn::Sub"].endswith(":stack/valine-orchestrator-${Stage}/*")
    passrole = next(s for s in statements if s["Sid"] == "HandTheChangeToCloudFormation")
    assert passrole["Resource"] == {"Fn::GetAtt": ["CloudFormationRole", "Arn"]}
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == (
        "cloudformation.amazonaws.com"
    )
    # CloudFormation's own role may only touch resources named for the stage.
    (cfn,) = resources["CloudFormationRole"]["Properties"]["Policies"]
    for statement in cfn["PolicyDocument"]["Statement"]:
        resource = statement["Resource"]
        if resource == "*":
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            read_only = all(":Describe" in a or ":Get" in a for a in actions)
            assert read_only or "Condition" in statement, statement["Sid"]
