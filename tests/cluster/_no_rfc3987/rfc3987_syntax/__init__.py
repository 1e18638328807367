"""Not the real rfc3987-syntax: on the Ray processes' path in the cluster tests, so it is absent.

jsonschema imports rfc3987-syntax when it finds it (an optional IRI format checker that
Jupyter's jupyter-events pulls into this all-in-one test environment; a Ray install does
not have it), and `import ray` imports jsonschema. Building its Earley grammar costs 2.3 s
of CPU at import, in every Ray process: measured 3.4 s of CPU for `import ray` with it,
0.8 s without. Under load (a load average of 10-19 on 2 cores) the dashboard agent then
misses the raylet's fixed 15 s wait for its port file and Ray's node "timed out during
startup" (0 of 3 starts at load 19; 3 of 3 with this on the path). jsonschema treats the
ImportError as "not installed" and only skips that format check.
"""

raise ImportError("rfc3987_syntax is left out of the Ray test processes (tests/cluster/_no_rfc3987)")
