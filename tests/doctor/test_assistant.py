"""The assistant hook against a real local HTTP server standing in for an OpenAI-compatible endpoint:
masked findings in, proposals through the same policy, plan, approval and audit path; forbidden,
unknown, malformed and garbage answers refused with the rule named (issue #16.6)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from fs_platform.cli.main import app
from fs_platform.doctor import ops
from fs_platform.doctor.assistant import mask
from fs_platform.governance.validate import CheckResult, ResultLog, ValidationResult
from fs_platform.timeutil import utcnow
from tests.doctor.conftest import VIEW, online_client
from tests.doctor.test_housekeeping import _rows, _set_ops

pytestmark = [pytest.mark.redis]
runner = CliRunner()


class FakeAssistant:
    """A chat-completions endpoint on 127.0.0.1 answering ``content`` (a dict is sent as JSON text)."""

    def __init__(self):
        self.content: object = {"summary": "ok"}
        self.raw: bytes | None = None  # a whole HTTP body instead of a chat completion
        self.requests: list[tuple[dict, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((dict(self.headers), body))
                content = fake.content if isinstance(fake.content, str) else json.dumps(fake.content)
                out = (
                    fake.raw
                    or json.dumps(
                        {"choices": [{"message": {"role": "assistant", "content": content}}]}
                    ).encode()
                )
                self.send_response(200 if self.path == "/v1/chat/completions" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def assistant():
    fake = FakeAssistant()
    yield fake
    fake.close()


def _failed_validation(platform):
    ResultLog(platform.repo_path).append(
        ValidationResult(
            view=VIEW,
            mode="strict",
            origin="backfill by alice@example.com",
            run_id="r1",
            checked_at=utcnow(),
            rows=10,
            passed=False,
            suite=None,
            checks=[CheckResult("expect_column_values_to_not_be_null", "txn_count_1h", False, 3, 30.0)],
        )
    )


def test_assistant_proposals_go_through_policy_plan_approval_and_audit(
    make_repo, assistant, monkeypatch, tmp_path
):
    platform = make_repo()
    keys = _rows(platform, hours_old=(1, 1, 1, 1))
    _failed_validation(platform)
    platform = _set_ops(
        platform, assistant={"url": assistant.url, "model": "ops-test", "api_key_env": "FS_TEST_AI_KEY"}
    )
    monkeypatch.setenv("FS_TEST_AI_KEY", "sekret-key")
    assistant.content = {
        "summary": "Validation of customer_txn_rolling failed; customer_id=42 (alice@example.com) keys never "
        "expire.",
        "actions": [
            {"kind": "expire_view_keys", "params": {"view": VIEW}, "reason": "keys without expiry"},
            {"kind": "teardown", "params": {"env": "prod"}, "reason": "start over"},
            {"kind": "drop_database", "params": {}},
            {"kind": "rematerialize", "params": {"view": VIEW}},
            {"kind": "compact_delta", "params": {"view": "no_such_view"}},
        ],
    }
    base = ["--repo", str(platform.repo_path)]
    plan = tmp_path / "plan.json"
    result = runner.invoke(
        app,
        [
            *base,
            "doctor",
            "--check",
            "validation",
            "--assistant",
            "--plan",
            str(plan),
            "--proposer",
            "alice",
            "--json",
        ],
    )
    assert result.exit_code == 3, result.output  # the validation warning decides, not the assistant
    out = json.loads(result.output)

    ((headers, body),) = assistant.requests
    assert headers["Authorization"] == "Bearer sekret-key" and body["model"] == "ops-test"
    sent = body["messages"][1]["content"]
    assert (
        "expect_column_values_to_not_be_null" in sent
        and "<email>" in sent
        and "alice@example.com" not in sent
    )

    rules = sorted((r["kind"], r["rule"]) for r in out["assistant"]["rejected"])
    assert rules == [
        ("compact_delta", "bad_params"),
        ("drop_database", "unknown_kind"),
        ("rematerialize", "bad_params"),
        ("teardown", "irreversible"),
    ]
    (finding,) = [f for f in out["findings"] if f["check"] == "assistant"]
    assert "alice@example.com" not in finding["message"] and "customer_id=<masked>" in finding["message"]
    written = json.loads(plan.read_text())
    assert sorted(a["kind"] for a in written["actions"]) == ["expire_view_keys", "rerun_validation"]
    (action,) = [a for a in written["actions"] if a["kind"] == "expire_view_keys"]
    assert action["reason"].startswith("assistant: ")
    written["actions"] = [action]  # the reviewer keeps only the assistant's proposal
    plan.write_text(json.dumps(written))

    dry = runner.invoke(app, [*base, "ops", "apply", str(plan), "--dry-run", "--json"])
    assert json.loads(dry.output)["results"][0]["status"] == "needs_approval"  # same approval as any action
    done = runner.invoke(app, [*base, "ops", "apply", str(plan), "--approved-by", "bob", "--json"])
    assert json.loads(done.output)["results"][0]["status"] == "executed", done.output
    assert all(online_client(platform).client.pttl(k) > 0 for k in keys)

    events = ops.log_events(platform)
    refused = sorted(e.rule for e in events if e.event == "refused" and e.actor == "assistant")
    assert refused == ["bad_params", "bad_params", "irreversible", "unknown_kind"]
    assert [e.event for e in events if e.action_id == action["id"]] == ["proposed", "approved", "executed"]
    assert "sekret-key" not in json.dumps([e.to_dict() for e in events], default=str)


@pytest.mark.parametrize(
    "answer",
    [b"this is not json", {"summary": 5}, {"summary": "x", "actions": "all"}, {"summary": "x", "extra": 1}],
)
def test_garbage_from_the_assistant_is_refused_as_malformed_and_doctor_stands(make_repo, assistant, answer):
    platform = make_repo()
    _failed_validation(platform)
    platform = _set_ops(platform, assistant={"url": assistant.url, "model": "m"})
    if isinstance(answer, bytes):
        assistant.raw = answer
    else:
        assistant.content = answer
    result = runner.invoke(
        app, ["--repo", str(platform.repo_path), "doctor", "--check", "validation", "--assistant", "--json"]
    )
    assert result.exit_code == 3, result.output
    out = json.loads(result.output)
    assert [r["rule"] for r in out["assistant"]["rejected"]] == ["malformed"]
    assert [f["check"] for f in out["findings"]] == ["validation"]  # nothing from the assistant added
    assert [e.rule for e in ops.log_events(platform) if e.event == "refused"] == ["malformed"]


def test_without_an_assistant_or_with_it_down_doctor_works(make_repo):
    platform = make_repo()
    base = ["--repo", str(platform.repo_path), "doctor", "--check", "ledger", "--assistant"]
    off = runner.invoke(app, base)
    assert off.exit_code == 0 and "No assistant configured" in off.output
    platform = _set_ops(
        platform, assistant={"url": "http://127.0.0.1:1/v1", "model": "m", "timeout_seconds": 2}
    )
    down = runner.invoke(app, [*base, "--json"])
    assert down.exit_code == 0, down.output
    assert [r["rule"] for r in json.loads(down.output)["assistant"]["rejected"]] == ["unreachable"]


def test_mask_hides_emails_entity_tokens_and_long_numbers_in_any_nesting():
    masked = mask(
        {
            "a": ["mail bob@x.org", {"k": "customer_id=7,merchant_id=9"}],
            "n": 123456789012,
            "t": "4111111111111111",
        }
    )
    assert masked == {
        "a": ["mail <email>", {"k": "customer_id=<masked>,merchant_id=<masked>"}],
        "n": 123456789012,
        "t": "<number>",
    }
