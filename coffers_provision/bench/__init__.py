"""Fleet bench collection: run numa-shard-bench on every host, keep the results, report on them.

- `run`: install the tool (the native_tools role) and run it on one host;
- `store`: the results store, `results/<run-id>/<host>.json` + facts, run.json, summary.csv, `latest`;
- `analysis`: per-host figures, outliers, asymmetric matrices, run-to-run regressions (pure);
- `report`: those as terminal tables and JSON;
- `plot`: heatmaps and the fleet chart (matplotlib, Agg);
- `planning`: the stored results as the planner's `Bench` for one host.

docs/bench.md describes the commands, the files and the thresholds.
"""
