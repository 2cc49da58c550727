"""The evaluation harness behind `camd eval`: identity figures on labelled data (../shared/data).

Not on the daemon's run-time path: it measures the run-time pieces (evidence extractors, matcher, memory)
on data they were not tuned on, and prints what docs/identity.md reports.
"""
