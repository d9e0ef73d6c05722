"""An API server outage said once each way (controller/kube/apihealth.py), without a control
plane."""

from __future__ import annotations

import asyncio
import logging

from controller.kube import apihealth
from controller.kube.apihealth import ApiHealth


def kopf_line(message: str, name: str = "kopf._cogs.clients.watching") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)


def said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shardring"]


def test_kopfs_retry_lines_become_one_line_and_real_errors_stay(caplog):
    caplog.set_level(logging.INFO, logger="shardring")
    health = ApiHealth()
    quiet = health.quiet_kopf_retries()
    for attempt in range(1, 6):
        assert not quiet.filter(kopf_line(
            f"Request attempt #{attempt}/9 failed; will retry: GET https://127.0.0.1:1/apis -> "
            f"ClientConnectorError(ConnectionKey(host='127.0.0.1'))"))
    assert not quiet.filter(kopf_line(
        "Request attempt #6/9 failed; will retry: GET https://x/apis -> "
        "APITooManyRequestsError('storage is (re)initializing', {})"))
    assert not quiet.filter(kopf_line(  # a restarting server's 503
        "Request attempt #6/9 failed; will retry: GET https://x/apis -> APIServerError("
        "'the server is currently unable to handle the request', {'reason': "
        "'ServiceUnavailable', 'code': 503}, status=503)"))
    # Not an outage: a server error (a failing webhook), a refusal, an escalation, ours.
    for kept in ("Request attempt #1/9 failed; will retry: PATCH https://x -> "
                 "APIServerError('Internal error occurred: failed calling webhook', "
                 "{'code': 500}, status=500)",
                 "Request attempt #1/9 failed; will retry: GET https://x -> "
                 "APITooManyRequestsError('too many requests', {})",
                 "Request attempt #9/9 failed; escalating: GET https://x -> "
                 "ClientConnectorError()"):
        assert quiet.filter(kopf_line(kept)), kept
    assert quiet.filter(kopf_line("Request attempt #1/9 failed; will retry: x -> "
                                  "ClientConnectorError()", name="shardring"))
    lines = said(caplog)
    assert len(lines) == 1 and "cannot be reached (ClientConnectorError)" in lines[0]
    health.answered()
    health.answered()
    assert len(said(caplog)) == 2 and "reachable again" in said(caplog)[1]


def test_while_down_it_asks_until_the_api_answers_so_the_next_outage_is_said_too(
        caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="shardring")
    monkeypatch.setattr(apihealth, "PROBE_EVERY", 0.01)
    answers = iter([False, False, True, True])

    async def probe() -> bool:
        answer = next(answers)
        if not answer:
            raise OSError("connection refused")
        return answer

    now = [0.0]

    async def scenario() -> None:
        health = ApiHealth(clock=lambda: now[0])
        health.probe, health.loop = probe, asyncio.get_running_loop()
        health.failed("ClientConnectorError")  # nothing else will ever say it is back
        for _ in range(200):
            if health.down_since is None:
                break
            await asyncio.sleep(0.01)
        assert health.down_since is None
        now[0] += apihealth.SETTLE + 1  # a new outage, long after
        health.failed("ClientConnectorError")
        health.stop()
    asyncio.run(scenario())
    lines = said(caplog)
    assert [("cannot be reached" in line, "reachable again" in line) for line in lines] == \
        [(True, False), (False, True), (True, False)]


def test_a_failure_just_after_the_return_continues_the_outage_already_said(caplog):
    """A restarted API server answers GET /version before its storage is ready."""
    caplog.set_level(logging.INFO, logger="shardring")
    now = [100.0]
    health = ApiHealth(clock=lambda: now[0])
    health.failed("ClientConnectorError")
    now[0] += 10
    health.answered()
    now[0] += 1
    health.failed("APITooManyRequestsError")  # storage is (re)initializing
    now[0] += 2
    health.answered()
    assert [("cannot be reached" in line, "reachable again" in line) for line in said(caplog)] \
        == [(True, False), (False, True)]


def test_a_cache_warming_up_as_the_operator_starts_is_not_an_outage(caplog):
    """`make cluster` then `make run`: the watch of a CRD created moments before is answered
    "storage is (re)initializing" for a second or two. Said only if it lasts."""
    caplog.set_level(logging.INFO, logger="shardring")
    now = [100.0]
    health = ApiHealth(clock=lambda: now[0])
    now[0] += 0.5
    health.failed(apihealth.WARMING_UP)
    now[0] += 2
    health.answered()
    assert said(caplog) == []
    health.failed(apihealth.WARMING_UP)  # again, and this time for good
    now[0] += apihealth.SETTLE
    health.failed(apihealth.WARMING_UP)
    assert len(said(caplog)) == 1 and "cannot be reached (APITooManyRequestsError: its " \
        "storage is (re)initializing, as after a restart or a CRD created again)" in said(caplog)[0]
    health.answered()
    assert len(said(caplog)) == 2
    now[0] += apihealth.SETTLE * 3  # long after the start, the same answer is an outage at once
    health.failed(apihealth.WARMING_UP)
    assert [("cannot be reached" in line, "reachable again" in line) for line in said(caplog)] \
        == [(True, False), (False, True), (True, False)]


def test_another_failure_during_a_warm_up_is_said_at_once(caplog):
    caplog.set_level(logging.INFO, logger="shardring")
    now = [100.0]
    health = ApiHealth(clock=lambda: now[0])
    health.started()
    health.failed(apihealth.WARMING_UP)
    assert said(caplog) == []
    now[0] += 1
    health.failed("ClientConnectorError")  # the server went away meanwhile: a real outage
    assert len(said(caplog)) == 1 and "(ClientConnectorError)" in said(caplog)[0]


def test_an_answer_to_a_request_sent_before_the_outage_does_not_end_it(caplog):
    """A request in flight as the server went away can still be answered after another one
    failed: that says nothing about the outage's end (it would be said over in SETTLE s)."""
    caplog.set_level(logging.INFO, logger="shardring")
    now = [100.0]
    health = ApiHealth(clock=lambda: now[0])
    sent = health.now()
    now[0] += 0.01
    health.failed("ProtocolError")
    health.answered(sent)  # the late answer
    now[0] += apihealth.SETTLE + 1
    health.failed("ClientConnectorError")  # still the same outage
    sent = health.now()
    now[0] += 0.5
    health.answered(sent)
    assert [("cannot be reached" in line, "reachable again" in line) for line in said(caplog)] \
        == [(True, False), (False, True)]
    assert "after 11.5 s" in said(caplog)[1]


def test_a_relapse_that_lasts_is_said_after_all(caplog):
    caplog.set_level(logging.INFO, logger="shardring")
    now = [100.0]
    health = ApiHealth(clock=lambda: now[0])
    health.failed("ClientConnectorError")
    health.answered()
    now[0] += 1
    health.failed("ClientConnectorError")  # a relapse: quiet for now
    assert len(said(caplog)) == 2
    now[0] += apihealth.SETTLE  # still failing well after: a new outage, said
    health.failed("ClientConnectorError")
    health.answered()
    assert [("cannot be reached" in line, "reachable again" in line) for line in said(caplog)] \
        == [(True, False), (False, True), (True, False), (False, True)]


def test_a_watch_that_does_not_close_cleanly_at_exit_is_one_quiet_line(caplog):
    import asyncio

    from controller.operator.handlers import quiet_generator_closing
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level("DEBUG"):
            quiet_generator_closing(loop, {
                "message": "an error occurred during closing of asynchronous generator <x>",
                "exception": RuntimeError("generator didn't stop after athrow()")})
            assert [r.levelname for r in caplog.records] == ["DEBUG"]
            assert not any(r.exc_info for r in caplog.records)
            quiet_generator_closing(loop, {"message": "something else went wrong"})
        assert caplog.records[-1].levelname == "ERROR"  # asyncio's own handler, as before
    finally:
        loop.close()
