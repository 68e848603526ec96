"""Hypothesis strategies shared by the property tests (one module, no copies)."""

from __future__ import annotations

from hypothesis import strategies as st

#: Items are small ints; their index decides failure and delay so any strategy can be checked.
items = st.lists(st.integers(min_value=-1000, max_value=1000), max_size=60)
#: Fixed counts, and auto (whose ledger guarantees must be the same).
workers = st.one_of(st.integers(min_value=1, max_value=64), st.sampled_from(["auto", "auto:1", "auto:3"]))
#: Per-item delay in seconds: mostly zero, sometimes up to 2 ms, so completion order shuffles.
delays = st.lists(st.sampled_from([0.0, 0.0, 0.0005, 0.001, 0.002]), max_size=60)
failing = st.sets(st.integers(min_value=0, max_value=59), max_size=20)
frequencies = st.lists(
    st.fixed_dictionaries({"id": st.integers(0, 10_000), "frequency": st.integers(0, 40)}),
    max_size=200,
)


@st.composite
def programs(draw):
    """A whole call for the contract property: (actions, fault_at, remaining_ms, errors, workers).

    Each item's action is one of return, sleepN (N ms), raise, hang, interrupt
    (KeyboardInterrupt), cancel (CancelledError) or exit (SystemExit); the input
    iterator raises at ``fault_at`` (or never); ``remaining_ms`` is the Lambda context's
    remaining time (or None: no context, and then no item hangs).
    """
    remaining_ms = draw(st.one_of(st.none(), st.integers(min_value=150, max_value=450)))
    kinds = ["return", "return", "return", "sleep1", "sleep3", "raise"]
    kinds += ["interrupt", "cancel", "exit"] if draw(st.integers(0, 4)) == 0 else []
    if remaining_ms is not None:
        kinds += ["hang"]
    actions = draw(st.lists(st.sampled_from(kinds), max_size=40))
    fault_at = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=max(len(actions) - 1, 0))))
    if not actions:
        fault_at = None
    errors = draw(st.sampled_from(["raise", "collect"]))
    workers = draw(st.integers(min_value=1, max_value=8))
    return actions, fault_at, remaining_ms, errors, workers
