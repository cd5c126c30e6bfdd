"""The distillation loss under several replicas: the summed per-replica losses equal the one-host loss."""

import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = """
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras.src.losses.losses import LossFunctionWrapper  # what compile() wraps a loss function in
from train import distill

n, batch = 3, 8
rng = np.random.default_rng(0)
labels = np.eye(n, dtype=np.float32)[rng.integers(0, n, batch)]
teacher = rng.dirichlet(np.ones(n), batch).astype(np.float32)
student = rng.dirichlet(np.ones(n), batch).astype(np.float32)
y_true = np.concatenate([labels, teacher], axis=-1)
loss = LossFunctionWrapper(distill.distillation_loss(n, 0.7, 4.0, 0.1))
single = float(loss(y_true, student))
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    loss = LossFunctionWrapper(distill.distillation_loss(n, 0.7, 4.0, 0.1))
data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((y_true, student)).batch(batch))
for yt, yp in data:
    total = float(strategy.reduce("SUM", strategy.run(loss, args=(yt, yp)), axis=None))
print(f"{single:.6f} {total:.6f}")
"""


def test_distillation_loss_is_scaled_once_per_replica(tmp_path):
    # Keras scales a reduced loss by 1 / replicas; the gradients are then summed over replicas. A loss
    # that reduces its parts itself got the cross-entropy scaled and the teacher's KL term not (n times
    # too heavy on n replicas).
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    single, total = map(float, result.stdout.split()[-2:])
    assert single > 0.1
    assert abs(total - single) < 1e-4 * single, (single, total)
