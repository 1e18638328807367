"""``serve --engine ray``: the CLI's options become the spec; a cluster too small is one line."""

from __future__ import annotations

import pytest
from _waiting import patience
from click.testing import CliRunner

from similar_images.cli import main
from similar_images.errors import SimilarImagesError
from similar_images.service.config import ServiceConfig
from similar_images.serving import launch
from similar_images.serving.spec import ServingSpec


@pytest.fixture
def captured(monkeypatch):
    calls = []
    monkeypatch.setattr(launch, "serve_on_ray", lambda spec, **kwargs: calls.append((spec, kwargs)))
    return calls


def test_the_ray_options_become_the_spec(tiny_files, captured):
    vectors, index, image_dir = tiny_files
    result = CliRunner().invoke(main, ["serve", "--vectors", str(vectors), "--index", str(index), "--engine", "ray",
                                       "--replicas", "2", "--shards", "3", "--cpus-per-replica", "0.25",
                                       "--max-staleness", "2.5", "--address", "auto", "--port", "8124",
                                       "--token", "t", "--allow-writes", "--batcher", "serve"])
    assert result.exit_code == 0, result.output
    spec, kwargs = captured[0]
    assert spec.batcher == "serve"
    assert (spec.replicas, spec.shards, spec.cpus_per_replica, spec.max_age_s) == (2, 3, 0.25, 2.5)
    assert spec.ranges == ((0, 4), (4, 8), (8, None)) and spec.vectors == str(vectors) and spec.index == str(index)
    assert spec.config.token == "t" and spec.writer and spec.cpus_wanted() == 0.25 * (2 * 4 + 1)
    assert kwargs["address"] == "auto" and kwargs["port"] == 8124 and kwargs["host"] == "127.0.0.1"


def test_replicas_min_max_autoscale_the_ingress_and_the_shards(tiny_files, captured):
    from similar_images.serving.deployments import build_application

    vectors, index, _ = tiny_files
    result = CliRunner().invoke(main, ["serve", "--vectors", str(vectors), "--index", str(index), "--engine", "ray",
                                       "--replicas", "1-4", "--shards", "2", "--cpus-per-replica", "0.25"])
    assert result.exit_code == 0, result.output
    spec = captured[0][0]
    assert (spec.replicas, spec.max_replicas, spec.autoscaling, spec.describe_replicas()) == (1, 4, True, "1-4")
    assert spec.cpus_wanted() == 0.25 * 3 and spec.cpus_wanted(4) == 0.25 * 12  # what starts, and at the most
    ingress = build_application(spec)._bound_deployment
    shard = ingress.init_args[1][0]._bound_deployment  # the bound shard deployments are the ingress's arguments
    for deployment in (ingress, shard):
        scaling = deployment._deployment_config.autoscaling_config
        assert (scaling.min_replicas, scaling.max_replicas, scaling.initial_replicas) == (1, 4, 1)
        assert scaling.target_ongoing_requests == 2
    fixed = build_application(ServingSpec(str(vectors), None, None, ServiceConfig(), replicas=3, max_replicas=3))
    assert fixed._bound_deployment._deployment_config.num_replicas == 3
    assert fixed._bound_deployment._deployment_config.autoscaling_config is None


@pytest.mark.parametrize("value", ["0", "4-1", "two", "1-", "-3", "1-2-3", "1.5", "0-2"])
def test_a_bad_replicas_value_is_refused_in_one_line_before_anything_opens(value, captured):
    result = CliRunner().invoke(main, ["serve", "--vectors", "no/such/db.npy", "--engine", "ray", "--replicas", value])
    assert result.exit_code == 2 and not captured
    assert f"--replicas: N or MIN-MAX with 1 <= MIN <= MAX (e.g. 2 or 1-4), got '{value}'" in result.output
    assert "no such" not in result.output  # refused before the database is looked for


def test_a_spec_whose_maximum_is_below_its_minimum_is_refused():
    with pytest.raises(ValueError, match=r"max_replicas \(1\) is below replicas \(2\)"):
        ServingSpec("v.npy", None, None, ServiceConfig(), replicas=2, max_replicas=1)
    with pytest.raises(ValueError, match="batcher must be one of micro, serve, got 'ray'"):
        ServingSpec("v.npy", None, None, ServiceConfig(), batcher="ray")


def test_ray_options_without_the_ray_engine_are_a_usage_error(tiny_files, captured):
    result = CliRunner().invoke(main, ["serve", "--vectors", str(tiny_files[0]), "--replicas", "2", "--shards", "2",
                                       "--batcher", "serve"])
    assert result.exit_code == 2 and not captured
    assert "--replicas, --shards, --batcher: only with --engine ray" in result.output


def test_more_shards_than_images_is_a_usage_error(tiny_files, captured):
    result = CliRunner().invoke(main, ["serve", "--vectors", str(tiny_files[0]), "--engine", "ray", "--shards", "13"])
    assert result.exit_code == 2 and "13 shards for 12 images" in result.output and not captured


def test_a_cluster_with_too_few_cpus_is_refused_before_anything_starts(tiny_files, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    spec = ServingSpec(str(tiny_files[0]), None, None, ServiceConfig(), replicas=2, shards=2,
                       ranges=((0, 6), (6, None)))
    with pytest.raises(SimilarImagesError, match=r"reserve 6 CPUs \(2 ingress, 2 x 2 shards, 1 each\), the cluster "
                                                 "has 2; lower --cpus-per-replica"):
        launch.start(spec)


def test_the_rayservice_builder_makes_the_application_from_its_args(tiny_files, monkeypatch):
    from ray.serve import Application

    from similar_images.serving.deployments import app_builder

    vectors, index, image_dir = tiny_files
    monkeypatch.setenv("SIMILAR_IMAGES_TOKEN", "from-a-secret")
    app = app_builder({"vectors": str(vectors), "index": str(index), "image_dir": str(image_dir), "replicas": "2-3",
                       "shards": 2, "cpus_per_replica": "0.5", "allow_writes": "true"})
    assert isinstance(app, Application)
    spec = app._bound_deployment.init_args[0]
    assert (spec.replicas, spec.max_replicas, spec.shards, spec.ranges, spec.cpus_per_replica) == (
        2, 3, 2, ((0, 6), (6, None)), 0.5)
    assert spec.config.token == "from-a-secret" and spec.writer
    with pytest.raises(ValueError, match="args.vectors"):
        app_builder({"index": str(index)})
    with pytest.raises(ValueError, match="args.replicas: N or MIN-MAX"):
        app_builder({"vectors": str(vectors), "replicas": "3-1"})


SIGTERM_CHILD = """
import contextlib, os, signal, sys
from similar_images.service.config import ServiceConfig
from similar_images.serving import launch
from similar_images.serving.spec import ServingSpec

stopped = []
launch.ray_session = lambda address: contextlib.nullcontext()
launch.start = lambda spec, **kwargs: "http://127.0.0.1:1"
launch.stop = lambda: stopped.append(True)
before = signal.getsignal(signal.SIGTERM)
launch.serve_on_ray(ServingSpec("v.npy", None, None, ServiceConfig()), host="127.0.0.1", port=1,
                    on_ready=lambda url: os.kill(os.getpid(), signal.SIGTERM))
print("stopped" if stopped == [True] and signal.getsignal(signal.SIGTERM) == before else "NOT stopped")
"""


def test_sigterm_stops_serving_as_ctrl_c_does():
    # in a process of its own: a SIGTERM sent to the test runner would reach the threads
    # that earlier tests' Ray and gRPC left in it
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SIGTERM_CHILD], capture_output=True, text=True, timeout=patience(600),
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == ["stopped"], done.stderr[-2000:]
