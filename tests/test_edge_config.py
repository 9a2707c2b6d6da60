"""config.json, safetensors headers and Hugging Face cache refs, written by a hostile hand:
each is refused with a short message naming the field, before anything big is allocated."""
import json
import os
import tracemalloc

import numpy as np
import pytest
from safetensors.numpy import save_file

import nanonorm.checkpoint as ckpt
from nanonorm.gpt import GPT, GPTConfig

TINY = GPTConfig(n_layer=2, n_head=2, n_embd=8, vocab_size=11, block_size=6)
SHORT = 300     # characters: an error message, not a dump


@pytest.fixture
def hf_dir(tmp_path):
    """A valid tiny checkpoint written the way transformers does (no manifest to trip first)."""
    d = tmp_path / "hf"
    GPT(TINY, seed=0).save(d)
    (d / "nanonorm-manifest.json").unlink(missing_ok=True)
    return d


def set_config(d, **changes):
    conf = json.loads((d / "config.json").read_text())
    for key, value in changes.items():
        if value is DELETE:
            conf.pop(key, None)
        else:
            conf[key] = value
    (d / "config.json").write_text(json.dumps(conf))   # NaN/Infinity as Python's json writes


DELETE = object()
BAD_FIELDS = [
    ("n_layer", 10**6), ("n_layer", 0), ("n_layer", -1), ("n_layer", "2"), ("n_layer", 2.0),
    ("n_layer", True), ("n_layer", None), ("n_layer", [2]), ("n_layer", float("inf")),
    ("n_layer", 10**400), ("n_layer", "x" * 100_000), ("n_layer", DELETE),
    ("n_head", "2"), ("n_head", 0), ("n_head", 3), ("n_head", DELETE),
    ("n_embd", 10**9), ("n_embd", 8.5), ("n_embd", DELETE),
    ("vocab_size", 10**12), ("vocab_size", "11"), ("vocab_size", DELETE),
    ("n_positions", -6), ("n_positions", 10**8), ("n_positions", 6.0),
    ("tie_word_embeddings", "false"), ("tie_word_embeddings", 0),
    ("tie_word_embeddings", None),
    ("layer_norm_epsilon", float("nan")), ("layer_norm_epsilon", float("inf")),
    ("layer_norm_epsilon", -1e-5), ("layer_norm_epsilon", 0), ("layer_norm_epsilon", "1e-5"),
    ("layer_norm_epsilon", True),
    ("activation_function", "relu"), ("activation_function", 5),
    ("activation_function", ["gelu_new"]),
    ("n_inner", 31), ("n_inner", 32.0), ("n_inner", "32"),
    ("model_type", "llama"), ("model_type", 5),
    ("scale_attn_weights", "yes"), ("scale_attn_by_inverse_layer_idx", 1),
]


@pytest.mark.parametrize("key, value", BAD_FIELDS,
                         ids=[f"{k}={str(v)[:12]}" for k, v in BAD_FIELDS])
def test_a_bad_field_is_refused_briefly_naming_it(hf_dir, key, value):
    set_config(hf_dir, **{key: value})
    if key == "n_positions":
        set_config(hf_dir, n_ctx=DELETE)
    with pytest.raises(ValueError) as info:
        GPT.from_pretrained(hf_dir)
    message = str(info.value)
    assert key in message or (key == "n_head" and "divisible" in message), message
    assert "config.json" in message
    assert len(message) < SHORT, message[:SHORT]


def test_missing_positions_are_named(hf_dir):
    set_config(hf_dir, n_positions=DELETE, n_ctx=DELETE)
    with pytest.raises(ValueError, match="missing key 'n_positions'"):
        GPT.from_pretrained(hf_dir)


def test_a_million_layers_is_refused_at_once_without_allocating(hf_dir):
    set_config(hf_dir, n_layer=10**6)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            GPT.from_pretrained(hf_dir)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "n_layer" in str(info.value) and len(str(info.value)) < SHORT
    assert peak < 2 << 20, f"{peak:,} bytes allocated to refuse it"   # the old code: 3.3 GB


def test_a_config_within_every_limit_but_too_big_overall(hf_dir):
    set_config(hf_dir, n_layer=1024, n_head=1024, n_embd=65536)
    with pytest.raises(ValueError, match="parameters") as info:
        GPT.from_pretrained(hf_dir)
    assert len(str(info.value)) < SHORT


@pytest.mark.parametrize("text", ["[1, 2]", '"gpt2"', "5", "null", "{not json", "[" * 100_000,
                                  "\xff\xfe"])
def test_a_config_that_is_not_an_object_is_refused(hf_dir, text):
    (hf_dir / "config.json").write_text(text, encoding="latin-1")
    with pytest.raises(ValueError, match="config.json") as info:
        GPT.from_pretrained(hf_dir)
    assert len(str(info.value)) < SHORT


def test_a_huge_config_file_is_refused_unread(hf_dir):
    conf = json.loads((hf_dir / "config.json").read_text())
    conf["padding"] = "x" * (2 << 20)
    (hf_dir / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ValueError, match="config.json.*larger than"):
        GPT.from_pretrained(hf_dir)


def test_tied_false_as_a_real_bool_still_loads(hf_dir):
    model = GPT(GPTConfig(**{**TINY.__dict__, "tie_weights": False}), seed=1)
    model.save(hf_dir)
    assert GPT.from_pretrained(hf_dir).config.tie_weights is False


def test_a_header_that_does_not_fit_the_config_lists_a_few_names(hf_dir):
    set_config(hf_dir, n_layer=1000)       # in range, but the file holds 2 layers
    with pytest.raises(ValueError, match=r"missing tensors .transformer\.h\.2\..*and 11,973 more"
                       ) as info:
        GPT.from_pretrained(hf_dir)
    assert len(str(info.value)) < SHORT    # the old code listed all 11,976 names
    set_config(hf_dir, n_layer=2)
    tensors = ckpt.read_checkpoint(hf_dir)[1]
    tensors.update({f"junk.{i}": np.zeros(1, np.float32) for i in range(5000)})
    save_file(tensors, str(hf_dir / "model.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected tensors 'junk\..*and 4,997 more") as info:
        GPT.from_pretrained(hf_dir)
    assert len(str(info.value)) < SHORT


def test_an_integer_tensor_is_refused_from_the_header(hf_dir):
    tensors = ckpt.read_checkpoint(hf_dir)[1]
    tensors["transformer.ln_f.bias"] = np.zeros(8, np.int32)
    save_file(tensors, str(hf_dir / "model.safetensors"))
    with pytest.raises(ValueError, match="ln_f.bias.*dtype"):
        GPT.from_pretrained(hf_dir)


def cache_repo(tmp_path, ref):
    """A Hugging Face cache repository whose refs/main holds `ref`, and a checkpoint planted
    outside its snapshots/ where a ref that escapes would lead."""
    repo = tmp_path / "hub" / "models--gpt2"
    GPT(TINY, seed=1).save(repo / "snapshots" / "abc123")
    GPT(TINY, seed=2).save(tmp_path / "planted")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(ref)
    return repo


@pytest.mark.parametrize("ref", ["../../../planted", "..", ".", "/etc", "abc123/../../../planted",
                                 "", "a\\b", "x" * 300, "abc123\n../x"])
def test_a_ref_that_leaves_the_snapshots_is_refused(tmp_path, ref):
    repo = cache_repo(tmp_path, ref)
    with pytest.raises(ValueError, match="refs/main") as info:
        GPT.from_pretrained(repo)
    assert len(str(info.value)) < SHORT


def test_a_ref_absolute_to_a_real_checkpoint_is_refused(tmp_path):
    repo = cache_repo(tmp_path, "")
    (repo / "refs" / "main").write_text(str(tmp_path / "planted"))
    with pytest.raises(ValueError, match="refs/main"):
        GPT.from_pretrained(repo)


def test_a_snapshot_linked_out_of_the_cache_is_refused(tmp_path):
    repo = cache_repo(tmp_path, "evil")
    os.symlink(tmp_path / "planted", repo / "snapshots" / "evil")
    with pytest.raises(ValueError, match="link out of"):
        GPT.from_pretrained(repo)


def test_a_good_ref_still_loads(tmp_path):
    repo = cache_repo(tmp_path, "abc123\n")
    loaded = GPT.from_pretrained(repo)
    np.testing.assert_array_equal(loaded.parameters()["transformer.wte.weight"],
                                  GPT(TINY, seed=1).parameters()["transformer.wte.weight"])
    (repo / "refs" / "main").write_text("def456")
    with pytest.raises(FileNotFoundError, match="def456"):
        GPT.from_pretrained(repo)
