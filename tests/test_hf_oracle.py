"""Optional oracle: logits, loss and every gradient equal transformers' GPT2LMHeadModel."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from nanonorm.gpt import GPT  # noqa: E402


@pytest.mark.parametrize("tie", [True, False])
def test_matches_hugging_face_gpt2(tmp_path, tie):
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=29, n_positions=9,
                                     attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
                                     tie_word_embeddings=tie)
    hf = transformers.GPT2LMHeadModel(hf_cfg).double().eval()
    with torch.no_grad():   # move LN/bias params off 1/0 so their gradients are exercised
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)

    model = GPT.from_pretrained(tmp_path, dtype="float64")
    assert model.config.tie_weights is tie
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 29, (3, 9)), rng.integers(0, 29, (3, 9))

    logits, loss = model.forward(idx, targets)
    grads = model.backward()

    out = hf(torch.from_numpy(idx)).logits
    ref_loss = torch.nn.functional.cross_entropy(out.reshape(-1, 29),
                                                 torch.from_numpy(targets).reshape(-1))
    ref_loss.backward()
    np.testing.assert_allclose(logits, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss, ref_loss.item(), rtol=1e-12)
    ref_grads = {n: p.grad.numpy() for n, p in hf.named_parameters()}
    assert set(ref_grads) == set(grads)
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_hugging_face_reads_our_checkpoint(tmp_path):
    from nanonorm.gpt import GPTConfig
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, vocab_size=31, block_size=8), seed=1,
                dtype="float64")
    model.save(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, torch_dtype=torch.float64).eval()
    idx = np.random.default_rng(1).integers(0, 31, (2, 8))
    with torch.no_grad():
        ref = hf(torch.from_numpy(idx)).logits.numpy()
    np.testing.assert_allclose(model.forward(idx)[0], ref, rtol=1e-10, atol=1e-12)
