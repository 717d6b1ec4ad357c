"""Extensions as a user writes them: each file adds one (a dataset, a probe, a tracker, an
executor, a method with state) through its registry and nothing else; ``tests/test_extensions.py``
runs a study with each. docs/architecture.md walks through them."""
