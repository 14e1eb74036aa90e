"""Cluster tests: keep Ray quiet and offline; ship test helpers to workers by value."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("DASK_DISTRIBUTED__WORKER__DAEMON", "False")

import cluster_helpers

cluster_helpers.ship_by_value()
