"""Where an append's fsync runs (collab/storage/fsync_plan.py): inline while fsyncs are
fast and few, on the writer threads when they are slow or many, and back when they are not."""

from __future__ import annotations

from collab.storage.fsync_plan import FsyncPlan


def test_the_first_fsync_goes_to_the_threads_then_fast_ones_run_inline() -> None:
    plan = FsyncPlan(slow=0.001, share=0.3)
    assert not plan.inline(0.0)  # nothing measured yet: a disk of unknown speed
    plan.measured(0.0002)
    assert plan.inline(0.1) and plan.inline(0.2)


def test_slow_fsyncs_go_to_the_threads_and_come_back_when_fast_again() -> None:
    plan = FsyncPlan(slow=0.001, share=0.3)
    plan.measured(0.0002)
    assert plan.inline(0.0)
    plan.measured(0.005)  # one slow fsync inline: the next ones go to the threads
    assert not plan.inline(0.1)
    for _ in range(20):  # the threads measure fast fsyncs again
        plan.measured(0.0002)
    assert plan.inline(0.2)


def test_many_fsyncs_go_to_the_threads_even_when_each_is_fast() -> None:
    """0.5 ms each: 600 a second would take the loop 30% of its time."""
    plan = FsyncPlan(slow=0.001, share=0.3)
    plan.measured(0.0005)
    answers = [plan.inline(n / 1000) for n in range(1000)]  # 1,000 a second
    assert all(answers[:600]) and not any(answers[601:])
    assert not plan.inline(1.0005)  # the next window knows the last one's rate
    late = [plan.inline(1.0 + n / 100) for n in range(1, 100)]  # 100 a second
    assert not any(late[:-1])
    assert plan.inline(2.05)  # a window at that rate: 5% of the loop, inline again


def test_a_burst_of_fsyncs_in_one_turn_goes_to_the_threads() -> None:
    """0.3 ms each: three in a row stall the loop 0.9 ms, four 1.2 ms (over the turn's 1 ms)."""
    plan = FsyncPlan(slow=0.001, share=0.5, turn=0.001)
    plan.measured(0.0003)
    assert plan.inline(0.0, 3)
    assert not plan.inline(0.01, 4)
    assert plan.inline(0.02, 1)
