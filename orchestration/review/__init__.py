"""Looking back at runs: comparing two runs, the timeline, costs and exports."""
