"""Runs over several CPU devices: `use_host_cores` and the per-run device limit (in subprocesses:
the CPU device count is fixed when JAX starts)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import repalign_jax as rj

# Every test here starts a process of its own: the CPU device count is fixed when JAX starts.
pytestmark = pytest.mark.slow

ENV = dict(os.environ, JAX_PLATFORMS="cpu")
ENV.pop("XLA_FLAGS", None)
ENV.pop("JAX_NUM_CPU_DEVICES", None)


def _python(code, **env):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(ENV, **env))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_use_host_cores_splits_the_cpu_only_before_jax_starts():
    code = (
        "import repalign_jax as rj, jax\n"
        "first = rj.use_host_cores(3)\n"
        "n = len(jax.devices())\n"
        "print(first, n, rj.use_host_cores(2), len(jax.devices()))"
    )
    assert _python(code) == "True 3 False 3"


def test_use_host_cores_keeps_a_count_the_user_chose():
    code = "import repalign_jax as rj, jax\nprint(rj.use_host_cores(3), len(jax.devices()))"
    assert _python(code, XLA_FLAGS="--xla_force_host_platform_device_count=2") == "False 2"
    assert _python(code, JAX_NUM_CPU_DEVICES="4") == "False 4"
    assert _python("import repalign_jax as rj, jax\nprint(rj.use_host_cores(1), len(jax.devices()))") == "False 1"


SCRIPT = """
import json, logging
import jax
import numpy as np
import repalign_jax as rj
rj.use_host_cores(2)
compiled = []  # JAX's log of each compilation: the shapes and the shardings of its arguments
class Log(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("Compiling"):
            compiled.append(record.getMessage())
logging.getLogger("jax").addHandler(Log())
jax.config.update("jax_log_compiles", True)
d = rj.two_point()
spec = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=4)
out, meshes = {}, {}
for runs in (1, 3):
    compiled.clear()
    res = rj.train_networks(d.x, d.targets, spec, rj.TrainConfig(epochs=40), gains=1.0, seeds=np.arange(runs), lrs=0.05)
    out[runs] = res.h.tolist()
    meshes[runs] = [("Mesh(" in m, "Mesh('runs': 2" in m) for m in compiled]
print(json.dumps({"meshes": meshes, "h": out}))
"""


def test_a_batch_spreads_over_host_devices_at_most_one_per_run():
    got = json.loads(_python(SCRIPT))
    one, three = got["meshes"]["1"], got["meshes"]["3"]
    assert one and not any(mesh for mesh, _ in one)  # one run: one device (no padding run on the other)
    assert three and any(both for _, both in three)  # three runs: split over both devices
    d = rj.two_point()
    spec = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=4)
    alone = rj.train_networks(d.x, d.targets, spec, rj.TrainConfig(epochs=40), gains=1.0, seeds=np.arange(3), lrs=0.05)
    np.testing.assert_allclose(np.asarray(got["h"]["1"]), alone.h[:1], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(got["h"]["3"]), alone.h, rtol=1e-5)


COMPACT = """
import json
import jax
import numpy as np
import repalign_jax as rj
rj.use_host_cores(2)
jax.config.update("jax_enable_x64", True)
compiled = []  # the names of the programs XLA compiles (JAX's monitoring events)
def listener(event, duration_secs, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        compiled.append(kwargs.get("fun_name"))
jax.monitoring.register_event_duration_secs_listener(listener)
lrs = np.array([0.08, 0.05, 0.03, 0.02, 0.012, 0.008, 0.006])
tasks = [rj.two_point(dx2=d, dy2=0.5) for d in (1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0)]
x, t = np.stack([d.x for d in tasks]), np.stack([d.targets for d in tasks])
spec = rj.NetworkSpec(d_in=1, d_out=1, width=16, depth=4)
config = rj.TrainConfig(epochs=1500, stop_loss=2e-3, progress_every=50)
out = {}
for compact in (False, None):
    compiled.clear()
    res = rj.train_networks(x, t, spec, config, gains=1.0, seeds=np.arange(7), lrs=lrs, compact=compact)
    out[str(compact)] = {"segments": compiled.count("jit(_segment)"), "h": res.h.tolist(),
                         "stop": res.stop_epoch.tolist(), "devices": len(jax.devices())}
print(json.dumps(out))
"""


def test_compaction_over_host_devices_keeps_a_multiple_of_them():
    """Over 2 CPU devices the shrinking batch stays a multiple of 2 (a stopped run pads it), and the
    records are those of the batch that keeps every run (float64).

    A batch split over the devices must be a multiple of them (else JAX raises `IndivisibleError`
    when it is placed), so that the trainings finish shows the padding; the compiled segments
    (`jit(_segment)`, one per batch size) show that the batch shrank."""
    out = json.loads(_python(COMPACT))
    kept, dropped = out["False"], out["None"]
    # 7 runs padded to 8 over 2 devices, throughout: one batch size (two executables while the first
    # segment's input carry, made by the start program, is laid out otherwise than a segment's output).
    assert kept["devices"] == 2 and kept["segments"] in (1, 2)
    assert dropped["segments"] >= 1  # smaller batches (8 was compiled by the first training)
    assert dropped["stop"] == kept["stop"] and len(set(kept["stop"])) > 3
    np.testing.assert_allclose(np.array(dropped["h"]), np.array(kept["h"]), rtol=1e-10, atol=1e-14)
