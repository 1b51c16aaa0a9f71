# TRL's own test file lives in upstream/ (fetched, not part of this repository); it only runs through the runner
# (`python -m tests.trl_upstream`), never under the project's pytest collection.
collect_ignore = ["upstream"]
