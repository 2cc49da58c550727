"""`camd adapt`: the body network learns this installation's own cameras (docs/adaptation.md).

tracks.py reads what the installation saw (sighting log, kept crops); train.py fine-tunes OSNet (torch,
the `adapt` extra, never imported by the daemon); check.py is the guardrail and re-derives thresholds;
store.py keeps the adapted networks and says which one is in use; run.py ties them together;
schedule.py runs it nightly from the daemon.
"""
