"""Bad input is refused at the public boundary with an error that names the argument."""
import numpy as np
import pytest

import nanonorm.functional as F

from backends import put

rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 4))
x32 = x.astype(np.float32)
ints = np.arange(24).reshape(2, 3, 4)
q = rng.standard_normal((2, 5, 4))
k = rng.standard_normal((2, 6, 4))
v = rng.standard_normal((2, 6, 3))

CASES = [
    # (call, error type, words the message must contain)
    (lambda: F.layer_norm(x, (3,)), ValueError, ["normalized_shape", "trailing"]),
    (lambda: F.layer_norm(x, (5, 3, 4)), ValueError, ["normalized_shape"]),
    (lambda: F.layer_norm(x, ()), ValueError, ["normalized_shape", "non-empty"]),
    (lambda: F.layer_norm(x, (0,)), ValueError, ["normalized_shape", "positive"]),
    (lambda: F.layer_norm(x, "4"), ValueError, ["normalized_shape"]),
    (lambda: F.layer_norm(x, 4.0), TypeError, ["normalized_shape"]),
    (lambda: F.layer_norm(x, 4, np.ones(3)), ValueError, ["weight", "(4,)"]),
    (lambda: F.layer_norm(x, (3, 4), np.ones(4)), ValueError, ["weight", "(3, 4)"]),
    (lambda: F.layer_norm(x, 4, None, np.ones((1, 4))), ValueError, ["bias", "(4,)"]),
    (lambda: F.layer_norm(x, 4, np.ones(4, np.float32)), TypeError, ["weight", "dtype"]),
    (lambda: F.layer_norm(ints, 4), TypeError, ["x", "floating"]),
    (lambda: F.layer_norm(x.astype(complex), 4), TypeError, ["x", "floating"]),
    (lambda: F.layer_norm(x, 4, eps=-1e-5), ValueError, ["eps", "positive"]),
    (lambda: F.layer_norm(x, 4, eps=float("nan")), ValueError, ["eps"]),
    (lambda: F.layer_norm(x32, 4, eps=1e-40), ValueError, ["eps", "smallest normal", "float32"]),
    (lambda: F.layer_norm(x.astype(np.float16), 4), TypeError, ["x", "float16", "float32"]),
    (lambda: F.layer_norm(x.tolist(), 4), TypeError, ["x", "array"]),
    (lambda: F.softmax(x, axis=3), ValueError, ["axis=3", "out of range"]),
    (lambda: F.softmax(x, axis=-4), ValueError, ["axis"]),
    (lambda: F.softmax(x, axis=1.0), TypeError, ["axis", "int"]),
    (lambda: F.softmax(x, temperature=0.0), ValueError, ["temperature", "positive"]),
    (lambda: F.log_softmax(x, temperature=-2), ValueError, ["temperature", "positive"]),
    (lambda: F.softmax(x, temperature="hot"), TypeError, ["temperature"]),
    (lambda: F.softmax(ints), TypeError, ["x", "floating"]),
    (lambda: F.scaled_dot_product_attention(q, k[:, :, :3], v), ValueError, ["k", "d=4"]),
    (lambda: F.scaled_dot_product_attention(q, k, v[:, :5]), ValueError, ["v", "positions"]),
    (lambda: F.scaled_dot_product_attention(q, k[:1], v[:1]), ValueError, ["leading"]),
    (lambda: F.scaled_dot_product_attention(q[0, 0], k, v), ValueError, ["q", "at least 2"]),
    (lambda: F.scaled_dot_product_attention(q, k.astype(np.float32), v), TypeError,
     ["k", "dtype"]),
    (lambda: F.scaled_dot_product_attention(q, k, v, causal=1), TypeError, ["causal", "bool"]),
    (lambda: F.scaled_dot_product_attention(q[..., :0], k[..., :0], v), ValueError,
     ["q", "at least one feature"]),
    (lambda: F.scaled_dot_product_attention(q, k, v, scale=float("inf")), ValueError,
     ["scale"]),
    (lambda: F.gelu(ints), TypeError, ["x", "floating"]),
    (lambda: F.linear(x, np.ones((3, 2))), ValueError, ["weight", "in_features=4"]),
    (lambda: F.linear(x, np.ones(4)), ValueError, ["weight"]),
    (lambda: F.linear(x, np.ones((4, 2)), np.ones(3)), ValueError, ["bias", "(2,)"]),
    (lambda: F.linear(x, np.ones((4, 2), np.float32)), TypeError, ["weight", "dtype"]),
    (lambda: F.embedding(np.array([0, 5]), np.ones((5, 2))), ValueError, ["idx", "[0, 5)"]),
    (lambda: F.embedding(np.array([-1]), np.ones((5, 2))), ValueError, ["idx"]),
    (lambda: F.embedding(np.array([0.0]), np.ones((5, 2))), TypeError, ["idx", "integer"]),
    (lambda: F.embedding(np.array([0]), np.ones(5)), ValueError, ["weight"]),
    (lambda: F.cross_entropy(x, np.zeros((2, 4), int)), ValueError, ["targets", "(2, 3)"]),
    (lambda: F.cross_entropy(x, np.full((2, 3), 4)), ValueError, ["targets", "[0, 4)"]),
    (lambda: F.cross_entropy(x, np.zeros((2, 3))), TypeError, ["targets", "integer"]),
    (lambda: F.cross_entropy(x[:, :0], np.zeros((2, 0), int)), ValueError,
     ["targets", "at least one"]),
    (lambda: F.cross_entropy(ints, np.zeros((2, 3), int)), TypeError, ["logits", "floating"]),
    (lambda: F.layer_norm(x, 4, put("array_api_strict", np.ones(4))), TypeError,
     ["different array libraries", "x", "weight"]),
    (lambda: F.scaled_dot_product_attention(q, put("array_api_strict", k), v), TypeError,
     ["different array libraries"]),
]


@pytest.mark.parametrize("call, error, words", CASES, ids=[str(i) for i in range(len(CASES))])
def test_bad_input_raises_a_clear_error(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"


def test_backward_checks_the_gradient_it_is_given():
    _, cache = F.layer_norm_forward(x, 4)
    with pytest.raises(ValueError, match="dy"):
        F.layer_norm_backward(np.ones((2, 3)), cache)
    with pytest.raises(TypeError, match="dy"):
        F.layer_norm_backward(x32, cache)
    with pytest.raises(TypeError, match="LayerNormCache"):
        F.layer_norm_backward(x, F.softmax_forward(x)[1])
    _, cache = F.cross_entropy_forward(x, np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="dloss"):
        F.cross_entropy_backward(np.ones(2), cache)


def test_nothing_the_caller_owns_is_modified():
    inputs = [a.copy() for a in (x, q, k, v)]
    y, cache = F.layer_norm_forward(inputs[0], 4, np.ones(4), np.zeros(4))
    F.layer_norm_backward(np.ones_like(y), cache)
    o, cache = F.scaled_dot_product_attention_forward(*inputs[1:], causal=True)
    F.scaled_dot_product_attention_backward(np.ones_like(o), cache)
    for before, after in zip((x, q, k, v), inputs):
        np.testing.assert_array_equal(before, after)
