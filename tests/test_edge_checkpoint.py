"""A checkpoint is one unit, attacked: kills at random moments of a save, a reader loading while
a writer saves, the umask, flipped bits, stale temporaries, the files a user keeps beside it."""
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

import nanonorm.atomic_dir as atomic_dir
import nanonorm.atomic_dir_swap as atomic_dir_swap
import nanonorm.atomic_dir_write as atomic_dir_write
import nanonorm.checkpoint as ckpt
from nanonorm.gpt import GPT, GPTConfig

# two models of different sizes, each with its own training state: a mix of the two is visible
SMALL = GPTConfig(n_layer=2, n_head=2, n_embd=8, vocab_size=11, block_size=6)
LARGE = GPTConfig(n_layer=3, n_head=4, n_embd=32, vocab_size=64, block_size=16, tie_weights=False)
MODELS = """
import numpy as np
from nanonorm.gpt import GPT, GPTConfig
SMALL = GPTConfig(n_layer=2, n_head=2, n_embd=8, vocab_size=11, block_size=6)
LARGE = GPTConfig(n_layer=3, n_head=4, n_embd=32, vocab_size=64, block_size=16,
                  tie_weights=False)
def state(model, tag):
    tensors = {"m/" + n: a * 0.5 for n, a in model.parameters().items()}
    return tensors, {"tag": tag}
MODELS = {"small": GPT(SMALL, seed=1), "large": GPT(LARGE, seed=2)}
STATES = {tag: state(m, tag) for tag, m in MODELS.items()}
"""
STAGING = ".ck.nanonorm-"


def models():
    namespace = {}
    exec(MODELS, namespace)
    return namespace["MODELS"], namespace["STATES"]


def which(model, known) -> str:
    """The tag of the known model `model` equals bit for bit; AssertionError for a mix."""
    for tag, m in known.items():
        if m.config == model.config and all(
                np.array_equal(a, model.parameters()[n]) for n, a in m.parameters().items()):
            return tag
    raise AssertionError(f"loaded a model equal to none saved: {model.config}")


def leftovers(parent):
    return sorted(n for n in os.listdir(parent) if n != "ck")


# a process that imports nanonorm once, then forks one saving child per line read: each child
# saves the two models (and their states) over ck in turn until it is killed
ZYGOTE = MODELS + """
import os, sys
import nanonorm.checkpoint as ckpt
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        while True:
            for tag in ("large", "small"):
                ckpt.save(MODELS[tag], "ck", train_state=STATES[tag])
    print(pid, flush=True)
    os.waitpid(int(sys.stdin.readline()), 0)    # reaped once the test has killed it
    print("reaped", flush=True)
"""


def test_a_kill_at_any_moment_leaves_the_old_or_the_new_checkpoint(tmp_path):
    known, states = models()
    ckpt.save(known["small"], tmp_path / "ck", train_state=states["small"])
    zygote = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=tmp_path, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    rng = np.random.default_rng(0)
    seen, staged = {"small": 0, "large": 0}, 0
    try:
        for delay in rng.uniform(0.0, 0.03, size=20):      # a save here takes ~5-10 ms
            zygote.stdin.write("fork\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(delay)                              # the child saves meanwhile
            os.kill(pid, 9)
            zygote.stdin.write(f"{pid}\n")
            zygote.stdin.flush()
            assert zygote.stdout.readline().strip() == "reaped"
            tag = which(GPT.from_pretrained(tmp_path / "ck"), known)
            tensors, meta = ckpt.read_train_state(tmp_path / "ck")
            assert meta == {"tag": tag}                     # weights and state of one save
            for name, a in states[tag][0].items():
                np.testing.assert_array_equal(tensors[name], a)
            seen[tag] += 1
            staged += any(n.startswith(STAGING) for n in leftovers(tmp_path))
    finally:
        zygote.kill()
        zygote.wait()
    print(f"20 kills: loaded {seen}, {staged} left a staging directory behind")
    known["small"].save(tmp_path / "ck")                  # cleans up what the kills left
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path / "ck")) == ["config.json", "model.safetensors",
                                                   "nanonorm-manifest.json"]


READER = MODELS + """
import os, sys, json
from nanonorm.gpt import GPT
def which(model):
    for tag, m in MODELS.items():
        if m.config == model.config and all(
                np.array_equal(a, model.parameters()[n]) for n, a in m.parameters().items()):
            return tag
    return None
loads, failures, mixed, seen, first = 0, 0, 0, set(), None
print("ready", flush=True)
while not os.path.exists("stop") or len(seen) < 2:
    try:
        tag = which(GPT.from_pretrained("ck"))
    except Exception as e:
        failures += 1
        first = first or f"{type(e).__name__}: {e}"
        continue
    loads += 1
    mixed += tag is None
    seen.add(tag)
    if len(seen) == 2 and not os.path.exists("seen-both"):
        open("seen-both", "w").close()
    if loads > 100000:
        break
print(json.dumps({"loads": loads, "failures": failures, "mixed": mixed, "first": first}))
"""


def test_a_concurrent_reader_never_sees_a_mix(tmp_path):
    known, _ = models()
    known["small"].save(tmp_path / "ck")
    reader = subprocess.Popen([sys.executable, "-c", READER], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, env={**os.environ,
                                                           "OPENBLAS_NUM_THREADS": "1"})
    try:
        assert reader.stdout.readline().strip() == "ready"
        saves = 0
        # save until the reader has loaded both models (and so read while they were swapped)
        while saves < 100 or not (tmp_path / "seen-both").exists():
            known["large" if saves % 2 == 0 else "small"].save(tmp_path / "ck")
            saves += 1
            assert saves < 20000, "the reader never saw both models"
        (tmp_path / "stop").touch()
        report = json.loads(reader.communicate(timeout=120)[0])
    finally:
        reader.kill()
        reader.wait()
    print(f"{saves} saves, reader: {report}")
    assert report["loads"] > 0
    assert report["failures"] == 0, report["first"]
    assert report["mixed"] == 0


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                        (0o077, 0o600, 0o700),
                                                        (0o002, 0o664, 0o775)])
def test_files_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        GPT(SMALL).save(tmp_path / "ck")
        ckpt.save(GPT(SMALL), tmp_path / "ck2", train_state=({"x": np.zeros(2)}, {}))
        legacy = tmp_path / "legacy.txt"
        ckpt.atomic_write(legacy, lambda p: Path(p).write_text("x"))
    finally:
        os.umask(previous)
    for d in (tmp_path / "ck", tmp_path / "ck2"):
        assert oct(os.stat(d).st_mode & 0o777) == oct(dir_mode)
        for name in os.listdir(d):
            assert oct(os.stat(d / name).st_mode & 0o777) == oct(file_mode), name
    assert oct(os.stat(legacy).st_mode & 0o777) == oct(file_mode)


def test_an_existing_directorys_mode_is_kept(tmp_path):
    (tmp_path / "ck").mkdir(mode=0o750)
    os.chmod(tmp_path / "ck", 0o750)
    GPT(SMALL).save(tmp_path / "ck")
    assert os.stat(tmp_path / "ck").st_mode & 0o777 == 0o750


def flip_last_bit(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01            # the last byte is tensor data, past the header
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_refused_naming_the_file(tmp_path):
    model = GPT(SMALL, seed=3)
    tensors = {"step": np.array([7]), "m": np.arange(5, dtype=np.float32)}
    ckpt.save(model, tmp_path / "ck", train_state=(tensors, {"k": "v"}))
    flip_last_bit(tmp_path / "ck" / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors.*sha256.*verify=False"):
        GPT.from_pretrained(tmp_path / "ck")
    with pytest.raises(atomic_dir.ChecksumError, match="model.safetensors"):
        ckpt.read_checkpoint(tmp_path / "ck")
    loaded = GPT.from_pretrained(tmp_path / "ck", verify=False)           # a documented skip
    changed = [n for n, a in model.parameters().items()
               if not np.array_equal(a, loaded.parameters()[n])]
    assert len(changed) == 1                                             # the flipped tensor

    flip_last_bit(tmp_path / "ck" / "train_state.safetensors")
    with pytest.raises(ValueError, match="train_state.safetensors.*sha256"):
        ckpt.read_train_state(tmp_path / "ck")
    got, meta = ckpt.read_train_state(tmp_path / "ck", verify=False)
    assert meta == {"k": "v"} and not np.array_equal(got["m"], tensors["m"])


def test_an_edited_config_or_a_damaged_manifest_is_refused(tmp_path):
    d = tmp_path / "ck"
    GPT(SMALL).save(d)
    conf = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps(conf | {"layer_norm_epsilon": 1e-3}))
    with pytest.raises(ValueError, match="config.json"):
        GPT.from_pretrained(d)
    assert GPT.from_pretrained(d, verify=False).config.ln_eps == 1e-3
    GPT(SMALL).save(d)
    (d / "nanonorm-manifest.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="nanonorm-manifest.json.*verify=False"):
        GPT.from_pretrained(d)
    GPT.from_pretrained(d, verify=False)
    with pytest.raises(TypeError, match="verify"):
        GPT.from_pretrained(d, verify="no")


def test_a_directory_without_manifest_loads_unverified(tmp_path):
    d = tmp_path / "ck"
    model = GPT(SMALL, seed=5)
    model.save(d)
    (d / "nanonorm-manifest.json").unlink()     # as transformers' save_pretrained leaves it
    which(GPT.from_pretrained(d), {"m": model})


def test_a_training_state_not_saved_with_the_weights_is_refused(tmp_path):
    d = tmp_path / "ck"
    GPT(SMALL).save(d)
    ckpt.atomic_write(d / "train_state.safetensors",     # written beside the unit, not in it
                      lambda p: save_file({"x": np.zeros(1)}, p))
    with pytest.raises(ValueError, match="not part of"):
        ckpt.read_train_state(d)
    assert ckpt.read_train_state(d, verify=False)[0]["x"].shape == (1,)


def test_train_state_round_trip_and_replacement(tmp_path):
    d = tmp_path / "ck"
    tensors = {"m/a": np.arange(6, dtype=np.float64).reshape(2, 3), "rng": np.array([1, 2],
               np.uint64), "flag": np.array([True]), "h": np.ones(3, np.float16)}
    ckpt.save(GPT(SMALL), d, train_state=(tensors, {"step": "12", "settings": "{}"}))
    got, meta = ckpt.read_train_state(d)
    assert meta == {"step": "12", "settings": "{}"}
    assert got.keys() == tensors.keys()
    for k, a in tensors.items():
        assert got[k].dtype == a.dtype
        np.testing.assert_array_equal(got[k], a)
    GPT(SMALL).save(d)      # a new checkpoint without a state: the old state goes with the old
    with pytest.raises(FileNotFoundError, match="train_state.safetensors"):
        ckpt.read_train_state(d)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.read_train_state(tmp_path / "nope")


@pytest.mark.parametrize("state, error", [
    ({"x": np.zeros(1)}, TypeError), (({"x": [1.0]}, {}), TypeError),
    (({"x": np.zeros(1)}, {"k": 1}), TypeError), (({1: np.zeros(1)}, {}), TypeError),
    (({"x": np.array(["s"])}, {}), TypeError), (({"__metadata__": np.zeros(1)}, {}), ValueError),
])
def test_a_bad_train_state_is_refused_before_anything_is_written(tmp_path, state, error):
    model = GPT(SMALL, seed=1)
    model.save(tmp_path / "ck")
    with pytest.raises(error, match="train_state"):
        ckpt.save(GPT(LARGE), tmp_path / "ck", train_state=state)
    which(GPT.from_pretrained(tmp_path / "ck"), {"old": model})
    assert leftovers(tmp_path) == []


def test_files_kept_beside_the_checkpoint_survive_saves(tmp_path):
    d = tmp_path / "ck"
    d.mkdir()
    (d / "tokenizer.json").write_text('{"v": 1}')
    (d / "vocab").mkdir()
    (d / "vocab" / "merges.txt").write_text("a b\n")
    os.symlink("tokenizer.json", d / "tok-link")
    for seed in range(3):
        GPT(SMALL, seed=seed).save(d)
    assert (d / "tokenizer.json").read_text() == '{"v": 1}'
    assert (d / "vocab" / "merges.txt").read_text() == "a b\n"
    assert os.readlink(d / "tok-link") == "tokenizer.json"
    assert leftovers(tmp_path) == []


def test_a_file_added_during_a_save_is_not_lost(tmp_path, monkeypatch):
    d = tmp_path / "ck"
    GPT(SMALL).save(d)
    swap = atomic_dir_write.swap

    def user_writes_then_swap(new, target):
        (target / "notes.txt").write_text("written while saving")   # into the old directory
        return swap(new, target)

    monkeypatch.setattr(atomic_dir_write, "swap", user_writes_then_swap)
    GPT(SMALL, seed=1).save(d)
    assert (d / "notes.txt").read_text() == "written while saving"
    assert leftovers(tmp_path) == []


def test_stale_temporaries_are_cleaned_but_a_live_writers_are_kept(tmp_path):
    d = tmp_path / "ck"
    GPT(SMALL).save(d)
    dead = tmp_path / f"{STAGING}999999-0123456789ab"        # a killed save's staging dir
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"\0" * 4096)
    live = tmp_path / f"{STAGING}{os.getpid()}-ba9876543210"
    live.mkdir()
    (live / "model.safetensors").write_bytes(b"partial")
    (d / ".model.safetensors.3f2a.tmp").write_bytes(b"\0" * 4096)   # older atomic_write's
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)                          # as a writer holds its own
    try:
        GPT(SMALL).save(d)
        assert leftovers(tmp_path) == [live.name]
        assert (live / "model.safetensors").read_bytes() == b"partial"
    finally:
        os.close(fd)
    GPT(SMALL).save(d)
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(d)) == ["config.json", "model.safetensors",
                                     "nanonorm-manifest.json"]


def test_paths_are_resolved_or_refused_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = GPT(SMALL, seed=2)
    model.save("rel")                                       # relative
    which(GPT.from_pretrained(tmp_path / "rel"), {"m": model})
    os.symlink("rel", "link")
    GPT(SMALL, seed=3).save("link")                         # through a symlinked directory
    assert os.path.islink("link")
    which(GPT.from_pretrained("rel"), {"m": GPT(SMALL, seed=3)})
    for bad, match in ((".", "current directory"), (str(tmp_path), "current directory"),
                       ("rel/config.json", "existing file"), ("/", "root")):
        with pytest.raises(ValueError, match=match):
            model.save(bad)
        with pytest.raises(ValueError, match=match):
            ckpt.check_writable(bad)
    os.symlink("missing-target", "dangling")
    with pytest.raises(ValueError, match="does not exist"):
        ckpt.check_writable("dangling")
    with pytest.raises(TypeError, match="path"):
        ckpt.check_writable(3)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        ckpt.check_writable("f/sub/dir")
    ckpt.check_writable("new/deeper/dir")                   # creatable: fine, and not created
    assert not (tmp_path / "new").exists()
    assert sorted(os.listdir(tmp_path)) == ["dangling", "f", "link", "rel"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no unwritable directory "
                    "to try")
def test_an_unwritable_parent_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        with pytest.raises(ValueError, match="not writable"):
            ckpt.check_writable(ro / "ck")
    finally:
        os.chmod(ro, 0o755)


def test_is_checkpoint(tmp_path):
    assert not ckpt.is_checkpoint(tmp_path / "nope")
    assert not ckpt.is_checkpoint(tmp_path)
    (tmp_path / "file").write_text("x")
    assert not ckpt.is_checkpoint(tmp_path / "file")
    for name in ("model.safetensors", "config.json", "train_state.safetensors",
                 "nanonorm-manifest.json"):
        d = tmp_path / name.replace(".", "_")
        d.mkdir()
        (d / name).write_text("")
        assert ckpt.is_checkpoint(d), name


def test_the_fallbacks_without_renameat2_or_directory_handles(tmp_path, monkeypatch):
    """Where renameat2 or dir_fd is missing (other systems): still one unit per save, foreign
    files kept, checksums verified; only the instant of the swap is no longer atomic."""
    monkeypatch.setattr(atomic_dir_swap, "_libc_renameat2", lambda: None)
    monkeypatch.setattr(os, "supports_dir_fd", set())
    d = tmp_path / "ck"
    GPT(SMALL, seed=1).save(d)                               # a plain rename: d did not exist
    (d / "tokenizer.json").write_text("{}")
    model = GPT(LARGE, seed=2)
    ckpt.save(model, d, train_state=({"x": np.ones(2)}, {"k": "v"}))   # renamed aside, then in
    which(GPT.from_pretrained(d), {"large": model})
    assert ckpt.read_train_state(d)[1] == {"k": "v"}
    assert (d / "tokenizer.json").read_text() == "{}"
    assert leftovers(tmp_path) == []
    flip_last_bit(d / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors.*sha256"):
        GPT.from_pretrained(d)


WRITER = MODELS + """
import nanonorm.checkpoint as ckpt
for n in range(25):
    tag = ("large", "small")[n % 2]
    ckpt.save(MODELS[tag], "ck", train_state=STATES[tag])
"""


def test_concurrent_writers_leave_one_whole_unit_and_no_leftovers(tmp_path):
    known, _ = models()
    known["small"].save(tmp_path / "ck")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER], cwd=tmp_path,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    loads = 0
    try:
        while any(w.poll() is None for w in writers):      # read while they race
            which(GPT.from_pretrained(tmp_path / "ck"), known)
            loads += 1
        errors = [w.communicate()[1] for w in writers if w.returncode]
    finally:
        for w in writers:
            w.kill()
            w.wait()
    print(f"2 writers x 25 saves, {loads} loads meanwhile")
    assert errors == []
    tag = which(GPT.from_pretrained(tmp_path / "ck"), known)
    assert ckpt.read_train_state(tmp_path / "ck")[1] == {"tag": tag}
    assert leftovers(tmp_path) == []


def test_a_fallback_killed_between_its_renames_is_restored_by_the_next_save(tmp_path):
    d = tmp_path / "ck"
    GPT(SMALL).save(d)
    (d / "tokenizer.json").write_text("{}")
    os.rename(d, tmp_path / f"{STAGING}999999-0123456789ab-old")   # moved aside, then killed
    model = GPT(LARGE, seed=4)
    model.save(d)
    which(GPT.from_pretrained(d), {"large": model})
    assert (d / "tokenizer.json").read_text() == "{}"
    assert leftovers(tmp_path) == []
