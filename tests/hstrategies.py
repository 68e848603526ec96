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
