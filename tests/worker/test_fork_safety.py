"""The worker forks a training process whenever one dies; a fork waits for a recovery round in progress,
so the child never inherits a lock the recovery thread held (it would hang on it, never starting a job)."""

from __future__ import annotations

import os
import threading

from worker import celery_app


def test_a_fork_waits_until_the_recovery_round_in_progress_ends():
    in_round, end_round = threading.Event(), threading.Event()

    def recovery_round():
        with celery_app._recovery_round:
            in_round.set()
            end_round.wait(10)

    forked = threading.Event()

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)  # the child: nothing to do
        forked.set()
        os.waitpid(pid, 0)

    recovery = threading.Thread(target=recovery_round)
    recovery.start()
    in_round.wait(10)
    forking = threading.Thread(target=fork)
    forking.start()
    assert not forked.wait(0.5)  # held back while the round runs
    end_round.set()
    assert forked.wait(10)
    forking.join()
    recovery.join()
