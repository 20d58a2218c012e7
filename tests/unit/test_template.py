"""template.yaml (AWS SAM): lint-clean, and consistent with the code it deploys.

Nothing here talks to AWS: cfn-lint runs offline, and the rest reads the template and
compares it with the code (handlers, settings, table layouts, resource names).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from valine.core.policy import PlannerRules
from valine.queue.base import DEFAULT_MAX_ATTEMPTS
from valine.runtime.aws_tables import table_definitions, time_to_live_definitions
from valine.runtime.config import ENV_NAMES, SECRET_SETTINGS
from valine.runtime.secrets import SECRET_KEYS, SECRET_KEYS_ENV, SECRETS_ARN_ENV, SECRETS_TTL_ENV

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
PREFIX = "valine-orchestrator"
STAGE = "test"

#: Every environment variable the code reads on AWS.
CODE_READS = {*ENV_NAMES.values(), SECRETS_ARN_ENV, SECRETS_TTL_ENV, SECRET_KEYS_ENV}
#: What the functions need on AWS: the non-secret settings, where the secret is, and
#: where the tables and queues are.
REQUIRED_ON_AWS = {
    "DISCORD_PUBLIC_KEY",
    "DISCORD_APPLICATION_ID",
    "GITHUB_REPOSITORY",
    "VALINE_STORE",
    SECRETS_ARN_ENV,
    "VALINE_RUNS_TABLE",
    "VALINE_AUDIT_TABLE",
    "VALINE_DEDUPE_TABLE",
    "VALINE_QUEUE_URL",
    "VALINE_DEAD_LETTER_URL",
}
#: The template's table resource for each table of table_definitions(), by name suffix.
TABLES = {
    "runs": "RunsTable",
    "audit": "AuditTable",
    "dedupe": "DedupeTable",
    "outbox": "OutboxTable",
}
FUNCTIONS = {
    "DiscordFunction": "valine-orchestrator-discord-${Stage}",
    "GitHubFunction": "valine-orchestrator-github-${Stage}",
    "WorkerFunction": "valine-orchestrator-worker-${Stage}",
    "ReconcileFunction": "valine-orchestrator-reconcile-${Stage}",
    "OutboxFunction": "valine-orchestrator-outbox-${Stage}",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """template.yaml as plain data (CloudFormation's short tags become ``Fn::`` keys)."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def environment(template: dict[str, Any], function: str) -> dict[str, Any]:
    """The environment a function gets: the globals, then its own variables."""
    merged = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    own = template["Resources"][function]["Properties"].get("Environment", {})
    merged.update(own.get("Variables", {}))
    return merged


def test_cfn_lint_is_clean() -> None:
    done = subprocess.run(
        [str(BIN / "cfn-lint"), str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_handler_the_template_names_exists(template: dict[str, Any]) -> None:
    functions = resources(template, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for name, function in functions.items():
        module_name, _, attribute = function["Properties"]["Handler"].rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute, None)
        assert callable(handler), f"{name}: {function['Properties']['Handler']} is not callable"
    assert template["Globals"]["Function"]["CodeUri"] == "build/lambda/"
    assert (ROOT / "src" / "valine" / "runtime" / "lambda_handlers.py").is_file()


def test_environment_is_what_the_code_reads(template: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        env = environment(template, function)
        unknown = set(env) - CODE_READS
        assert not unknown, f"{function} sets variables no code reads: {sorted(unknown)}"
        missing = REQUIRED_ON_AWS - set(env)
        assert not missing, f"{function} lacks {sorted(missing)}"
        assert env["VALINE_STORE"] == {"Fn::Sub": "dynamodb://valine-orchestrator-${Stage}"}
        assert env[SECRETS_ARN_ENV] == {"Ref": "Secrets"}
    # Only the Discord function enqueues through the outbox (the others send to SQS).
    outboxes = {f: environment(template, f).get("VALINE_OUTBOX_TABLE") for f in FUNCTIONS}
    assert {f: t for f, t in outboxes.items() if t} == {"DiscordFunction": {"Ref": "OutboxTable"}}
    # The Discord function knows which secret keys were given (names, from conditions on
    # the parameters): one entry per secret setting, the name or empty.
    declared = environment(template, "DiscordFunction")[SECRET_KEYS_ENV]
    separator, entries = declared["Fn::Join"]
    assert separator == ","
    assert sorted(e["Fn::If"][1] for e in entries) == sorted(SECRET_KEYS)
    conditions = template["Conditions"]
    secret = template["Resources"]["Secrets"]["Properties"]["SecretString"]["Fn::ToJsonString"]
    for entry in entries:
        condition, key, otherwise = entry["Fn::If"]
        assert otherwise == ""
        # set when the parameter the secret takes that key from is not empty
        assert conditions[condition] == {"Fn::Not": [{"Fn::Equals": [secret[key], ""]}]}


def test_no_secret_is_in_an_environment_variable(template: dict[str, Any]) -> None:
    secret_env = {ENV_NAMES[name] for name in SECRET_SETTINGS}
    assert secret_env == SECRET_KEYS
    no_echo = {n for n, p in template["Parameters"].items() if p.get("NoEcho")}
    assert no_echo == {
        "DiscordBotToken",
        "GitHubToken",
        "GitHubWebhookSecret",
        "GitHubAppPrivateKey",
    }
    for function in FUNCTIONS:
        env = environment(template, function)
        assert not secret_env & set(env), f"{function} has a secret in its environment"
        mentioned = json.dumps(env)
        for parameter in no_echo:
            assert parameter not in mentioned, f"{function}'s environment uses {parameter}"
    # The secret holds exactly the secret settings, each from its NoEcho parameter.
    mapping = template["Resources"]["Secrets"]["Properties"]["SecretString"]["Fn::ToJsonString"]
    assert set(mapping) == SECRET_KEYS
    assert {v["Ref"] for v in mapping.values()} == no_echo


def _to_json_string(value: Any, parameters: dict[str, str]) -> str:
    """What CloudFormation's ``Fn::ToJsonString`` (AWS::LanguageExtensions) makes of a
    mapping of ``Ref``s: the JSON serialisation of the resolved values."""
    assert isinstance(value, dict) and "Fn::ToJsonString" in value, "not built by ToJsonString"
    resolved = {key: parameters[ref["Ref"]] for key, ref in value["Fn::ToJsonString"].items()}
    return json.dumps(resolved, separators=(",", ":"))


def test_the_secret_survives_any_character(template: dict[str, Any]) -> None:
    assert "AWS::LanguageExtensions" in template["Transform"]  # gives Fn::ToJsonString
    pem = '-----BEGIN PRIVATE KEY-----\nMIIE\\x"y\n-----END PRIVATE KEY-----\n'
    parameters = {
        "DiscordBotToken": 'tok"en\\with\nnewline',
        "GitHubToken": "ghp_\\",
        "GitHubWebhookSecret": 's3cr3t\t\\"\u2028' + "x" * 16,
        "GitHubAppPrivateKey": pem,
    }
    secret = template["Resources"]["Secrets"]["Properties"]["SecretString"]
    document = json.loads(_to_json_string(secret, parameters))
    assert document["GITHUB_APP_PRIVATE_KEY"] == pem
    assert document["DISCORD_BOT_TOKEN"] == parameters["DiscordBotToken"]
    assert document["GITHUB_WEBHOOK_SECRET"] == parameters["GitHubWebhookSecret"]
    # No parameter forbids a character the JSON can now carry.
    for name in parameters:
        assert "AllowedPattern" not in template["Parameters"][name], name


def test_waf_is_optional_and_rate_limits_both_paths_per_ip(template: dict[str, Any]) -> None:
    assert template["Parameters"]["EnableWaf"]["Default"] == "false"
    acl = template["Resources"]["WebAcl"]
    association = template["Resources"]["WebAclAssociation"]
    assert acl["Condition"] == association["Condition"] == "UseWaf"
    assert template["Conditions"]["UseWaf"] == {"Fn::Equals": [{"Ref": "EnableWaf"}, "true"]}
    (rule,) = acl["Properties"]["Rules"]
    statement = rule["Statement"]["RateBasedStatement"]
    assert (statement["AggregateKeyType"], rule["Action"]) == ("IP", {"Block": {}})
    paths = {
        s["ByteMatchStatement"]["SearchString"]
        for s in statement["ScopeDownStatement"]["OrStatement"]["Statements"]
    }
    assert paths == {"/discord", "/github/webhook"}
    assert (
        "restapis/${Api}/stages/${Api.Stage}" in association["Properties"]["ResourceArn"]["Fn::Sub"]
    )


def _sub(value: Any) -> str:
    """The ``Fn::Sub`` string of a template value, with ``${Stage}`` filled in."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    assert isinstance(text, str)
    return text.replace("${Stage}", STAGE)


def test_tables_mirror_table_definitions(template: dict[str, Any]) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == set(TABLES.values())
    ttl_by_table = {
        d["TableName"]: d["TimeToLiveSpecification"] for d in time_to_live_definitions(PREFIX)
    }

    def canonical(items: list[dict[str, Any]] | None) -> list[str]:
        return sorted(json.dumps(i, sort_keys=True) for i in items or [])

    for definition in table_definitions(PREFIX):
        suffix = definition["TableName"].removeprefix(f"{PREFIX}-")
        resource = tables[TABLES[suffix]]["Properties"]
        # valine-orchestrator-<table>-<stage>
        assert _sub(resource["TableName"]) == f"{PREFIX}-{suffix}-{STAGE}"
        assert resource["BillingMode"] == definition["BillingMode"] == "PAY_PER_REQUEST"
        assert resource["KeySchema"] == definition["KeySchema"]
        for key in ("AttributeDefinitions", "GlobalSecondaryIndexes"):
            assert canonical(resource.get(key)) == canonical(definition.get(key)), (
                f"{suffix}: {key} differs from table_definitions()"
            )
        assert resource["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert resource.get("TimeToLiveSpecification") == ttl_by_table.get(
            definition["TableName"]
        ), f"{suffix}: TTL differs from time_to_live_definitions()"
        stream = definition.get("StreamSpecification")
        expected = {"StreamViewType": stream["StreamViewType"]} if stream else None
        assert resource.get("StreamSpecification") == expected, f"{suffix}: stream differs"


def test_names_follow_the_design(template: dict[str, Any]) -> None:
    for logical, name in FUNCTIONS.items():
        assert template["Resources"][logical]["Properties"]["FunctionName"] == {"Fn::Sub": name}
    api = template["Resources"]["Api"]["Properties"]
    assert api["Name"] == {"Fn::Sub": "valine-orchestrator-api-${Stage}"}
    assert api["StageName"] == {"Ref": "Stage"}
    outputs = template["Outputs"]
    assert {"DiscordWebhookUrl", "GitHubWebhookUrl", "RunStateTableName"} <= set(outputs)
    assert outputs["RunStateTableName"]["Value"] == {"Ref": "RunsTable"}
    assert _sub(outputs["DiscordWebhookUrl"]["Value"]).endswith(f"/{STAGE}/discord")
    assert _sub(outputs["GitHubWebhookUrl"]["Value"]).endswith(f"/{STAGE}/github/webhook")
    routes = {
        (e["Properties"]["Path"], e["Properties"]["Method"])
        for f in FUNCTIONS
        for e in template["Resources"][f]["Properties"].get("Events", {}).values()
        if e["Type"] == "Api"
    }
    assert routes == {("/discord", "post"), ("/github/webhook", "post")}  # the two POST endpoints


def test_runtime_memory_and_architecture(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.11"
    assert globals_["Architectures"] in (["arm64"], ["x86_64"])
    for logical in FUNCTIONS:
        properties = template["Resources"][logical]["Properties"]
        assert 128 <= properties["MemorySize"] <= 10240
        assert "LogGroup" in properties["LoggingConfig"]
    for group in resources(template, "AWS::Logs::LogGroup").values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_queue_retries_and_partial_batch_failures(template: dict[str, Any]) -> None:
    queue = template["Resources"]["JobQueue"]["Properties"]
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    max_attempts = DEFAULT_MAX_ATTEMPTS  # what SqsJobQueue is built with on AWS
    # retry() dead-letters (with the error, and the dead-letter hook) on the last attempt;
    # SQS's redrive is the back stop for workers that died.
    assert queue["RedrivePolicy"]["maxReceiveCount"] == max_attempts + 1
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
    }
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    mapping = template["Resources"]["WorkerQueueMapping"]["Properties"]
    assert mapping["BatchSize"] >= 1
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["FunctionName"] == {"Ref": "WorkerFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}
    schedule = template["Resources"]["ReconcileFunction"]["Properties"]["Events"]
    assert {name: e["Properties"]["Schedule"] for name, e in schedule.items()} == {
        "Every5Minutes": "rate(5 minutes)",
        "ScheduleTick": "rate(1 minute)",  # the [schedule] tick: within GRACE of each slot
    }
    assert "Input" not in schedule["Every5Minutes"]["Properties"]
    assert json.loads(schedule["ScheduleTick"]["Properties"]["Input"]) == {"valine": "schedule"}


def test_the_worker_timeout_fits_the_longest_job(template: dict[str, Any]) -> None:
    from valine.github.transport import Transport
    from valine.infra import budget

    worker = template["Resources"]["WorkerFunction"]["Properties"]
    queue = template["Resources"]["JobQueue"]["Properties"]
    client = inspect.signature(Transport).parameters  # GitHubClient's transport
    # The budget is the clients' own defaults, not numbers of its own.
    assert client["timeout"].default == budget.GITHUB_TIMEOUT
    assert client["max_attempts"].default == budget.GITHUB_ATTEMPTS
    assert client["max_retry_wait"].default == budget.GITHUB_RETRY_WAIT
    assert client["rate_limit_cap"].default == budget.RATE_LIMIT_BUDGET
    one_call = (
        client["max_attempts"].default * client["timeout"].default
        + client["max_retry_wait"].default
        + client["rate_limit_cap"].default
    )
    assert budget.LONGEST_JOB == budget.MAX_CALLS_PER_JOB * one_call == 560
    # The ship job of planner.max_tasks tasks: one merge each, the mutation, its read-back.
    assert PlannerRules().max_tasks + 2 <= budget.MAX_CALLS_PER_JOB
    assert worker["Timeout"] >= budget.LONGEST_JOB + budget.START_MARGIN
    assert worker["Timeout"] <= 900  # Lambda's maximum
    # No record of a batch becomes visible to another worker while the batch runs.
    assert queue["VisibilityTimeout"] >= budget.VISIBILITY_FACTOR * worker["Timeout"]
    assert queue["VisibilityTimeout"] <= 43_200  # SQS's maximum


def _statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    policies = template["Resources"][function]["Properties"]["Policies"]
    return [s for p in policies for s in p["Statement"]]


def _referenced(value: Any) -> set[str]:
    """The logical ids a statement's resources refer to (Ref, GetAtt, ${X.Arn})."""
    text = json.dumps(value)
    return (
        set(re.findall(r'"Ref": "(\w+)"', text))
        | set(re.findall(r'"Fn::GetAtt": \["(\w+)"', text))
        | set(re.findall(r"\$\{(\w+)\.Arn\}", text))
    )


def test_least_privilege(template: dict[str, Any]) -> None:
    allowed = {
        # no Secrets: its commands check VALINE_SECRET_KEYS, never the secret's values
        "DiscordFunction": {"RunsTable", "AuditTable", "DedupeTable", "OutboxTable"},
        "GitHubFunction": {"DedupeTable", "JobQueue", "Secrets"},
        "WorkerFunction": {
            "RunsTable",
            "AuditTable",
            "DedupeTable",
            "JobQueue",
            "DeadLetterQueue",
            "Secrets",
        },
        "ReconcileFunction": {"RunsTable", "DedupeTable", "JobQueue", "Secrets"},
        # the stream it reads, the queue it feeds, the dead letters of its failed batches
        "OutboxFunction": {"OutboxTable", "JobQueue", "DeadLetterQueue"},
    }
    for function, expected in allowed.items():
        statements = _statements(template, function)
        touched: set[str] = set()
        for statement in statements:
            assert statement["Effect"] == "Allow"
            assert "*" not in json.dumps(statement["Resource"]).replace("/index/*", "")
            assert all(":*" not in action for action in statement["Action"])
            touched |= _referenced(statement["Resource"])
        assert touched == expected, function
        secret_actions = {
            a for s in statements if _referenced(s["Resource"]) == {"Secrets"} for a in s["Action"]
        }
        assert secret_actions <= {"secretsmanager:GetSecretValue"}
    # The forwarder reads the outbox's stream and nothing else of the table.
    (stream,) = [
        s
        for s in _statements(template, "OutboxFunction")
        if "OutboxTable" in _referenced(s["Resource"])
    ]
    assert stream["Resource"] == {"Fn::GetAtt": ["OutboxTable", "StreamArn"]}
    assert set(stream["Action"]) == {
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:DescribeStream",
        "dynamodb:ListStreams",
    }


def _client_calls(source: str) -> set[str]:
    """The DynamoDB operations ``source`` calls on a client (``.put_item(`` -> PutItem)."""
    names = re.findall(r"client\.(\w+)\(", source)
    return {"".join(part.capitalize() for part in name.split("_")) for name in names}


def test_every_function_may_make_every_call_of_the_dedupe_table(template: dict[str, Any]) -> None:
    """The queue's claims (seen interactions, rate limits) count uses with UpdateItem: a
    function without it would be refused by IAM on every slash command."""
    from valine.infra import aws
    from valine.queue import sqs

    calls = _client_calls(inspect.getsource(sqs.DynamoDedupe))
    calls |= _client_calls(inspect.getsource(aws.claim_key))
    assert calls == {"PutItem", "UpdateItem", "DeleteItem"}
    for function in set(FUNCTIONS) - {"OutboxFunction"}:  # it only reads the outbox's stream
        allowed = {
            action
            for statement in _statements(template, function)
            if _referenced(statement["Resource"]) == {"DedupeTable"}
            for action in statement["Action"]
        }
        assert {f"dynamodb:{call}" for call in calls} <= allowed, function


def test_alarms_cover_every_function_the_dlq_and_discord_latency(
    template: dict[str, Any],
) -> None:
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]

    def watched(metric: str) -> set[str]:
        return {
            d["Value"]["Ref"]
            for a in alarms
            if a["MetricName"] == metric
            for d in a["Dimensions"]
            if d["Name"] == "FunctionName"
        }

    assert watched("Errors") == set(FUNCTIONS)
    assert watched("Throttles") == set(FUNCTIONS)
    (duration,) = [a for a in alarms if a["MetricName"] == "Duration"]
    assert duration["ExtendedStatistic"] == "p99"
    assert duration["Threshold"] == 2500
    assert duration["Dimensions"][0]["Value"] == {"Ref": "DiscordFunction"}
    (dlq,) = [a for a in alarms if a["Namespace"] == "AWS/SQS"]
    assert dlq["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)
    assert resources(template, "AWS::CloudWatch::Dashboard")


def test_lambda_requirements_are_generated_from_the_pins() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lambda_requirements.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pinned = (ROOT / "src" / "requirements.txt").read_text()
    assert "pynacl==" in pinned
    for absent in ("boto3", "granian", "uvloop", "python-dotenv"):
        assert f"\n{absent}==" not in pinned, f"{absent} must not be in the Lambda package"


def test_samconfig_example_has_placeholders_only() -> None:
    text = (ROOT / "samconfig.toml.example").read_text()
    assert 'region = "us-west-2"' in text
    assert "samconfig.toml" in (ROOT / ".gitignore").read_text().split()
    for line in text.splitlines():
        if "=" in line and ("Token=" in line or "Secret=" in line or "Key=" in line):
            assert "<" in line, f"not a placeholder: {line}"


def test_application_alarms_watch_stranded_runs_rate_limit_and_dead_letters(
    template: dict[str, Any],
) -> None:
    from valine.metrics import METRICS, NAMESPACE

    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == NAMESPACE
    }
    by_cloudwatch = {m.cloudwatch: m for m in METRICS.values()}
    for name, alarm in alarms.items():
        assert name in by_cloudwatch, f"alarm on {name}: no code emits it"
        # Every EMF line carries the dimension set [Stage]: the alarms watch exactly it.
        assert alarm["Dimensions"] == [{"Name": "Stage", "Value": {"Ref": "Stage"}}]
        assert alarm["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic"
    stranded = alarms["ActiveRunAge"]
    assert (stranded["Statistic"], stranded["ComparisonOperator"]) == (
        "Maximum",
        "GreaterThanThreshold",
    )
    assert stranded["Threshold"] == {"Ref": "StrandedRunAge"}
    assert template["Parameters"]["StrandedRunAge"]["Default"] == 86400
    limit = alarms["GitHubRateLimitRemainingPercent"]
    assert (limit["Statistic"], limit["ComparisonOperator"], limit["Threshold"]) == (
        "Minimum",
        "LessThanThreshold",
        10,
    )
    dead = alarms["DeadLetters"]
    assert (dead["Statistic"], dead["Threshold"]) == ("Sum", 0)
    # The reconcile (every 5 minutes) is what measures the active run's age.
    assert stranded["Period"] == 300
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["VALINE_STAGE"] == {"Ref": "Stage"}


def test_the_dashboard_shows_the_application_metrics(template: dict[str, Any]) -> None:
    from valine.metrics import METRICS

    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    document = json.loads(re.sub(r"\$\{[^}]+\}", "0", body))
    text = json.dumps(document)
    for metric in METRICS.values():
        assert f'"{metric.cloudwatch}"' in text or f'\\"{metric.cloudwatch}\\"' in text, (
            metric.cloudwatch
        )


def test_the_vpc_is_optional_and_off_by_default(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    for name in ("SubnetIds", "SecurityGroupIds"):
        assert params[name]["Type"] == "CommaDelimitedList"
        assert params[name]["Default"] == ""
    assert template["Conditions"]["UseVpc"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "SubnetIds"}]}, ""]}]
    }
    vpc = template["Globals"]["Function"]["VpcConfig"]["Fn::If"]
    assert vpc[0] == "UseVpc"
    assert vpc[1] == {
        "SubnetIds": {"Ref": "SubnetIds"},
        "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
    }
    assert vpc[2] == {"Ref": "AWS::NoValue"}
