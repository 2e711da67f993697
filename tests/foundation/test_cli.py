"""The `fs` command's contract: --help everywhere, one-line errors, exit codes 0/1/2."""

import subprocess
import sys

import pytest
import typer

from fs_platform.cli.main import app, main


def _commands(group: typer.Typer, prefix=()):
    command = typer.main.get_command(group)
    for name, sub in getattr(command, "commands", {}).items():
        yield (*prefix, name)
        if hasattr(sub, "commands"):
            for subname in sub.commands:
                yield (*prefix, name, subname)


ALL = sorted(set(_commands(app)))


def test_core_commands_exist():
    names = {c[0] for c in ALL}
    assert {"apply", "plan", "materialize", "materialize-incremental", "teardown", "demo"} <= names


@pytest.mark.parametrize("command", ALL, ids=" ".join)
def test_every_command_help_explains_itself(command, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: fs" in out
    # a real explanation, not just the usage line
    assert len(out.split("Usage:", 1)[1].strip().splitlines()) > 3


def test_usage_error_exits_2(capsys):
    assert main(["materialize"]) == 2
    assert "Missing argument" in capsys.readouterr().err


def test_missing_repo_path_one_line_exit_1(tmp_path, capsys):
    assert main(["--repo", str(tmp_path / "missing"), "plan"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no feature repo at" in err[0] and "--repo" in err[0]


def test_malformed_feature_store_yaml_one_line_exit_1(example_repo, capsys):
    (example_repo / "feature_store.yaml").write_text("project: [payments\n")
    assert main(["--repo", str(example_repo), "plan"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "malformed YAML" in err[0]


def test_unknown_env_one_line_exit_1(example_repo, capsys):
    assert main(["--repo", str(example_repo), "--env", "qa", "apply"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown environment 'qa'" in err[0]


def test_unreachable_registry_database_one_line_exit_1(example_repo, monkeypatch, capsys):
    monkeypatch.setenv("FS_REGISTRY_URL", "postgresql+psycopg://fs:hunter2@127.0.0.1:1/registry")
    monkeypatch.setenv("FS_REDIS_URL", "redis://127.0.0.1:6379/0")
    assert main(["--repo", str(example_repo), "--env", "staging", "plan"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "cannot reach the SQL registry database at 127.0.0.1:1/registry" in err[0]
    assert "hunter2" not in err[0]


def test_traceback_only_with_fs_debug(tmp_path):
    cmd = [sys.executable, "-m", "fs_platform.cli.main", "--repo", str(tmp_path / "missing"), "plan"]
    quiet = subprocess.run(cmd, capture_output=True, text=True)
    loud = subprocess.run(
        cmd, capture_output=True, text=True, env={**__import__("os").environ, "FS_DEBUG": "1"}
    )
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert loud.returncode != 0 and "Traceback" in loud.stderr


def test_teardown_asks_for_confirmation(example_repo):
    proc = subprocess.run(
        [sys.executable, "-m", "fs_platform.cli.main", "--repo", str(example_repo), "teardown"],
        input="n\n",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Tear down project 'payments'" in proc.stdout + proc.stderr
    assert "aborted" in (proc.stdout + proc.stderr).lower()


def test_feast_experimental_warnings_are_hidden_unless_verbose(example_repo):
    """Feast warns that on-demand views are "experimental" on every call; a terminal user sees it
    only with -v (the example repo has an on-demand view)."""
    fs = [sys.executable, "-m", "fs_platform.cli.main", "--repo", str(example_repo)]
    quiet = subprocess.run([*fs, "plan"], capture_output=True, text=True, timeout=120)
    loud = subprocess.run([*fs, "-v", "plan"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "on demand feature view" in quiet.stdout
    assert "experimental" not in quiet.stderr
    assert "is an experimental feature" in loud.stderr
