"""The array-module switch: array type, device and dtype in = out; the per-backend helpers."""
import array_api_strict as xs
import numpy as np
import pytest

import nanonorm.functional as F
from nanonorm import use_impl
from nanonorm.backend import array_namespace, normal, scatter_add_rows, to_numpy

OTHER_DEVICE = xs.Device("device1")  # array_api_strict refuses to mix arrays across devices


def on_device(a):
    return xs.asarray(a, device=OTHER_DEVICE)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_keeps_array_type_device_and_dtype_forward_and_backward(dtype):
    rng = np.random.default_rng(0)
    x = on_device(rng.standard_normal((2, 3, 4)).astype(dtype))
    w = on_device(np.ones(4, dtype))
    idx = on_device(np.array([[0, 2, 2]]))
    targets = on_device(np.array([[1, 0, 3], [2, 2, 0]]))
    calls = [
        (F.layer_norm_forward, F.layer_norm_backward, (x, 4, w, w)),
        (F.softmax_forward, F.softmax_backward, (x, 1, 2.0)),
        (F.log_softmax_forward, F.log_softmax_backward, (x,)),
        (lambda *a: F.scaled_dot_product_attention_forward(*a, causal=True),
         F.scaled_dot_product_attention_backward, (x, x, x)),
        (F.gelu_forward, F.gelu_backward, (x,)),
        (F.linear_forward, F.linear_backward, (x, on_device(np.ones((4, 5), dtype)), None)),
        (F.embedding_forward, F.embedding_backward, (idx, x[0, ...])),
    ]
    with use_impl("reference"):
        for forward, backward, args in calls:
            out, cache = forward(*args)
            grads = backward(xs.ones_like(out), cache)
            for a in (out, *(g for g in (grads if isinstance(grads, tuple) else (grads,))
                             if g is not None)):
                assert array_namespace(a) is xs
                assert a.device == OTHER_DEVICE and a.dtype == x.dtype
        loss, cache = F.cross_entropy_forward(x, targets)
        dz = F.cross_entropy_backward(1.0, cache)
        assert loss.device == dz.device == OTHER_DEVICE and loss.dtype == dz.dtype == x.dtype


def test_scatter_add_accumulates_repeated_rows_on_every_path():
    rng = np.random.default_rng(1)
    idx = np.array([0, 3, 3, 1, 3])
    rows = rng.standard_normal((5, 2))
    expected = np.zeros((4, 2))
    for i, r in zip(idx, rows):
        expected[i] += r
    np.testing.assert_allclose(scatter_add_rows(np.zeros((4, 2)), idx, rows), expected)
    strict = scatter_add_rows(xs.zeros((4, 2), dtype=xs.float64), xs.asarray(idx),
                              xs.asarray(rows))
    np.testing.assert_allclose(to_numpy(strict), expected)


def test_seeded_normal_draws_the_same_numbers_on_every_backend():
    a = normal((3, 4), 0.02, rng=np.random.default_rng(7), like_xp=array_namespace(np.ones(1)),
               dtype=np.float32)
    b = normal((3, 4), 0.02, rng=np.random.default_rng(7), like_xp=xs, dtype=xs.float32)
    assert a.dtype == np.float32 and b.dtype == xs.float32
    np.testing.assert_array_equal(a, to_numpy(b))
    assert 0.005 < np.std(a) < 0.05
