"""Checkpoints: round trip, the Hugging Face layouts, corrupt files, interrupted saves."""
import json
import os

import numpy as np
import pytest
from safetensors.numpy import save_file

import nanonorm.checkpoint as ckpt
import nanonorm.checkpoint_io as checkpoint_io
from nanonorm.gpt import GPT, GPTConfig

TINY = GPTConfig(n_layer=2, n_head=2, n_embd=8, vocab_size=11, block_size=6)
IDX = np.array([[1, 2, 3, 4, 5, 0], [10, 9, 8, 7, 6, 5]])


def write_hf(dirpath, model, *, bare=False, masks=True, lm_head=True, config=None):
    """A checkpoint written the way transformers (or the original gpt2 upload) writes one."""
    dirpath.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, a in model.parameters().items():
        key = name.removeprefix("transformer.") if bare else name
        tensors[key] = np.ascontiguousarray(a)
    cfg = model.config
    if masks:
        for i in range(cfg.n_layer):
            pre = f"h.{i}." if bare else f"transformer.h.{i}."
            tensors[pre + "attn.bias"] = np.tril(np.ones((1, 1, cfg.block_size, cfg.block_size),
                                                         np.float32))
            tensors[pre + "attn.masked_bias"] = np.array(-1e4, np.float32)
    if lm_head and cfg.tie_weights:
        tensors["lm_head.weight"] = model.parameters()["transformer.wte.weight"].copy()
    save_file(tensors, str(dirpath / "model.safetensors"), metadata={"format": "pt"})
    hf = config or {"model_type": "gpt2", "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                    "n_embd": cfg.n_embd, "vocab_size": cfg.vocab_size, "n_ctx": cfg.block_size,
                    "n_positions": cfg.block_size, "layer_norm_epsilon": 1e-5,
                    "activation_function": "gelu_new", "n_inner": None}
    (dirpath / "config.json").write_text(json.dumps(hf))
    return dirpath


@pytest.mark.parametrize("tie", [True, False])
def test_save_then_from_pretrained_gives_identical_logits(tmp_path, tie):
    cfg = GPTConfig(**{**TINY.__dict__, "tie_weights": tie})
    model = GPT(cfg, seed=4)
    model.save(tmp_path / "ck")
    assert sorted(os.listdir(tmp_path / "ck")) == ["config.json", "model.safetensors",
                                                   "nanonorm-manifest.json"]
    conf = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert conf["model_type"] == "gpt2" and conf["n_positions"] == 6
    assert conf["tie_word_embeddings"] is tie and conf["layer_norm_epsilon"] == 1e-5
    loaded = GPT.from_pretrained(tmp_path / "ck")
    assert loaded.config == cfg
    np.testing.assert_array_equal(model.forward(IDX)[0], loaded.forward(IDX)[0])
    wide = GPT.from_pretrained(tmp_path / "ck", dtype="float64")
    assert wide.forward(IDX)[0].dtype == np.float64


@pytest.mark.parametrize("bare", [False, True])
def test_hugging_face_layouts_load(tmp_path, bare):
    model = GPT(TINY, seed=2)
    write_hf(tmp_path / "hf", model, bare=bare)
    loaded = GPT.from_pretrained(tmp_path / "hf")
    for name, a in model.parameters().items():
        np.testing.assert_array_equal(loaded.parameters()[name], a)
    # c_attn.bias is a parameter, not a mask buffer: it must come through
    assert "transformer.h.1.attn.c_attn.bias" in loaded.parameters()


def test_hugging_face_cache_directory(tmp_path):
    model = GPT(TINY, seed=3)
    repo = tmp_path / "hub" / "models--gpt2"
    blobs = write_hf(repo / "blobs_src", model, bare=True)
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):   # the cache links snapshot files to blobs
        os.symlink(blobs / f, snap / f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    for path in (repo, snap):
        loaded = GPT.from_pretrained(path)
        np.testing.assert_array_equal(loaded.forward(IDX)[0], model.forward(IDX)[0])


def test_missing_and_corrupt_files_raise_clearly(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        GPT.from_pretrained(tmp_path / "nope")
    d = GPT(TINY).save(tmp_path / "ck") or tmp_path / "ck"
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])          # truncated
    with pytest.raises(OSError, match="model.safetensors"):
        GPT.from_pretrained(d)
    (d / "model.safetensors").write_bytes(b"\x00" * 64)                   # garbage
    with pytest.raises(OSError, match="model.safetensors"):
        GPT.from_pretrained(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        GPT.from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        GPT.from_pretrained(d)


def test_mismatched_tensors_are_named(tmp_path):
    model = GPT(TINY)
    other = GPT(GPTConfig(**{**TINY.__dict__, "n_embd": 12}))
    d = write_hf(tmp_path / "a", other)
    bad = json.loads((d / "config.json").read_text()) | {"n_embd": 8}
    (d / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"tensor .transformer\.h\.0\.attn\.c_attn\.bias. "
                                         r"has shape \(36,\), expected \(24,\)"):
        GPT.from_pretrained(d)
    d = write_hf(tmp_path / "b", model)
    tensors = ckpt.read_checkpoint(d)[1]
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match="missing tensors.*h.1.mlp.c_fc.bias"):
        GPT.from_pretrained(d)
    tensors["transformer.h.1.mlp.c_fc.bias"] = np.zeros(32, np.float32)
    tensors["transformer.h.7.attn.c_attn.weight"] = np.zeros((8, 24), np.float32)
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(ValueError, match="unexpected tensor 'transformer.h.7.attn.c_attn.weight'"):
        GPT.from_pretrained(d)
    d = write_hf(tmp_path / "c", model, config={"model_type": "gpt2", "n_layer": 2, "n_head": 2,
                                                "n_embd": 8, "vocab_size": 11, "n_positions": 6,
                                                "activation_function": "relu"})
    with pytest.raises(ValueError, match="activation_function"):
        GPT.from_pretrained(d)


def test_interrupted_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    d = tmp_path / "ck"
    old = GPT(TINY, seed=0)
    old.save(d)

    def crash_midway(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_io, "save_file", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        GPT(TINY, seed=1).save(d)
    assert sorted(os.listdir(d)) == ["config.json", "model.safetensors",
                                     "nanonorm-manifest.json"]
    assert sorted(os.listdir(tmp_path)) == ["ck"]                          # no temp left over
    np.testing.assert_array_equal(GPT.from_pretrained(d).forward(IDX)[0], old.forward(IDX)[0])
