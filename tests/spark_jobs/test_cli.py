"""The job contract's summary line: what `run_job` prints last is what its readers (operator, alerts) parse."""

from __future__ import annotations

from medallion.cli import JobError, last_summary, parse_summary, run_job


def test_a_summary_line_is_a_json_object_naming_its_job():
    assert parse_summary('{"job": "bronze", "status": "success"}\n') == {"job": "bronze", "status": "success"}
    for line in ('{"not": "a summary"}', "{broken", '["job"]', 'INFO {"job": "bronze"}', "", None):
        assert parse_summary(line) is None, line


def test_what_a_job_prints_last_is_the_summary_its_readers_find(capsys):
    assert run_job("probe", lambda ctx: {"rows": 3}, argv=["--run-id", "r1"]) == 0
    ok = last_summary("log line\n" + capsys.readouterr().out + "INFO after\n")
    assert (ok["job"], ok["status"], ok["run_id"], ok["rows"]) == ("probe", "success", "r1", 3)

    def fail(ctx):
        raise JobError("no landing folder")

    assert run_job("probe", fail, argv=[]) == 1
    failed = last_summary(capsys.readouterr().out)
    assert (failed["status"], failed["reason"]) == ("failed", "no landing folder")


def test_counts_spark_connect_returns_as_numpy_scalars_are_numbers_in_the_summary(capsys):
    """Over Spark Connect `DataFrame.count()` returns a NumPy integer: the summary still carries a JSON number,
    which the operator, the alerts and the tests compare with ints."""
    import numpy as np

    assert run_job("probe", lambda ctx: {"released": np.int64(1), "score": np.float64(0.5)}, argv=[]) == 0
    summary = last_summary(capsys.readouterr().out)
    assert (summary["released"], summary["score"]) == (1, 0.5) and isinstance(summary["released"], int)


def test_a_failing_job_exits_non_zero_with_a_one_line_reason(run_job, capsys):
    summary = run_job("generate", "--interval-start", "yesterday", expect_ok=False)
    assert summary["_exit_code"] == 1 and summary["status"] == "failed"
    assert summary["reason"] == "not an ISO-8601 timestamp: 'yesterday'"
    assert "ERROR: not an ISO-8601 timestamp: 'yesterday'" in capsys.readouterr().err
