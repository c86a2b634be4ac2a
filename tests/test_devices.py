"""Where training runs: the strategy, which process writes, and the precision policy."""

import json

import pytest

pytest.importorskip("tensorflow")
from blastcell import devices, params
from blastcell.params import ParamsError


def test_multi_worker_without_a_cluster_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ParamsError, match=r"'train.strategy' multi_worker needs"):
        devices.distribution("multi_worker")


TWO = {"worker": ["a:1", "b:1"]}
WITH_CHIEF = {"chief": ["c:1"], "worker": ["a:1"]}


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        (None, None, True),
        (TWO, ("worker", 0), True),
        (TWO, ("worker", 1), False),
        (WITH_CHIEF, ("worker", 0), False),
        (WITH_CHIEF, ("chief", 0), True),
    ],
)
def test_only_the_chief_writes(monkeypatch, cluster, task, chief):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        config = {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert devices.is_chief() is chief


def test_precision_auto_and_explicit(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t: fpu sse avx512f avx512_bf16\n")
    assert devices.cpu_has_bf16(cpuinfo)
    cpuinfo.write_text("flags\t: fpu sse avx2\n")
    assert not devices.cpu_has_bf16(cpuinfo)
    assert devices.resolve_precision("float32", "mobilenet_v3_small") == "float32"
    assert devices.resolve_precision("mixed_bfloat16", "mobilenet_v3_small") == "mixed_bfloat16"
    assert devices.resolve_precision("auto", "seed_cnn") in ("float32", "mixed_bfloat16")


ARCHITECTURES = params.ModelParams.model_fields["architecture"].annotation.__args__


def test_precision_auto_on_a_bfloat16_cpu_follows_the_architecture(monkeypatch):
    monkeypatch.setattr(devices.tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    picked = {a: devices.resolve_precision("auto", a) for a in ARCHITECTURES}
    assert picked == {
        "seed_cnn": "mixed_bfloat16",
        "alexnet": "mixed_bfloat16",
        "mobilenet_v3_small": "float32",  # depthwise convolutions: slower in bfloat16 on a CPU
        "efficientnet_v2_b0": "float32",
        "resnet50_v2": "mixed_bfloat16",
    }
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert {devices.resolve_precision("auto", a) for a in ARCHITECTURES} == {"float32"}
