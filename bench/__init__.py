"""thread-weaver benchmarks: each workload measured beside the baseline a user would compare.

`python -m bench` (full) or `python -m bench --quick`; results in bench/results/latest.json and
the tables of docs/benchmarks.md. See bench/__main__.py.
"""
