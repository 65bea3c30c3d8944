"""The training bar counts finished steps: it waits for queued outputs, never runs ahead of them."""
from fewjax.train.progress import FinishedSteps


class Bar:
    def __init__(self):
        self.n = 0

    def update(self, k):
        self.n += k


class Output:
    """A step's output: ready when `done` says so; waiting on it finishes it."""

    def __init__(self, done=False):
        self.done, self.waited = done, False

    def is_ready(self):
        return self.done

    def block_until_ready(self):
        self.waited, self.done = True, True
        return self


def test_queued_steps_count_only_once_finished_and_at_most_two_wait():
    bar, outputs = Bar(), [Output() for _ in range(4)]
    steps = FinishedSteps(bar, max_in_flight=2)
    steps.dispatched(5, outputs[0])
    assert bar.n == 0 and not outputs[0].waited  # still computing: not counted, not waited for
    outputs[0].done = True
    steps.dispatched(5, outputs[1])
    assert bar.n == 5  # the first finished on its own: counted
    steps.dispatched(5, outputs[2])
    assert bar.n == 5 and not outputs[1].waited  # two in flight: the host does not block
    steps.dispatched(5, outputs[3])
    assert bar.n == 10 and outputs[1].waited and not outputs[2].waited  # a third: wait for the oldest only
    steps.drain()
    assert bar.n == 20 and all(o.done for o in outputs)


def test_real_arrays_finish_in_order():
    import jax.numpy as jnp

    bar = Bar()
    steps = FinishedSteps(bar)
    for i in range(5):
        steps.dispatched(1, jnp.full((3,), i) * 2)
    steps.drain()
    assert bar.n == 5
