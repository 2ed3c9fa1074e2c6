"""The small text side of image-language pretraining: a word vocabulary, a text encoder, the image projection.

* ``Vocabulary``: lower-case words (``[a-z]+`` and digit runs) of the training captions, most frequent first,
  after ``<pad>``, ``<unk>`` and ``<cls>``; ``encode`` prepends ``<cls>`` and pads or cuts to ``max_words``.
* ``TextEncoder``: word + position embeddings, ``layers`` pre-norm transformer encoder layers
  (``torch.nn.TransformerEncoderLayer``), a final LayerNorm, the ``<cls>`` output projected to ``embed_dim``.
* ``ImageProjection``: a linear map from the pooled features of a backbone stage to ``embed_dim``, one per
  stage the image embedding may read (the tagging head's branch points); it takes any leading-channel prefix
  of the stage's widest output, so every subnet of the supernet shares it.
* ``ImageText``: both, plus the learned temperature (CLIP's ``logit_scale``, ``exp`` capped at 100).

``save_image_text`` writes ``text_encoder.safetensors`` (all tensors) and ``text_encoder.json`` (vocabulary,
sizes, prompt template): no pickle. ``load_image_text`` reads them back.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import ConfigError, RunError

__all__ = ["ImageText", "TextConfig", "Vocabulary", "load_image_text", "save_image_text"]

FORMAT = "compress.ImageText/1"
PROMPT = "a photo of a {}"
_WORD = re.compile(r"[a-z]+|[0-9]+")
_SPECIAL = ("<pad>", "<unk>", "<cls>")


def words(text: str) -> list[str]:
    """The lower-case words of ``text``."""
    return _WORD.findall(text.lower())


class Vocabulary:
    """Word <-> id; ids 0, 1, 2 are ``<pad>``, ``<unk>``, ``<cls>``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[:3]) != _SPECIAL:
            raise ConfigError(f"a vocabulary starts with {list(_SPECIAL)}, but got {list(tokens[:3])}")
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int = 20000) -> Vocabulary:
        counts = Counter(w for t in texts for w in words(t))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([*_SPECIAL, *kept[: max_size - len(_SPECIAL)]])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: Sequence[str], max_words: int) -> torch.Tensor:
        """int64 [len(texts), max_words]: ``<cls>`` then the word ids, padded with ``<pad>`` (0)."""
        out = torch.zeros((len(texts), max_words), dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [2] + [self.ids.get(w, 1) for w in words(text)][: max_words - 1]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


@dataclass(frozen=True)
class TextConfig:
    """Sizes of the text encoder and the shared embedding."""

    embed_dim: int = 128
    width: int = 128
    layers: int = 2
    heads: int = 4
    max_words: int = 64
    init_temperature: float = 0.07

    def __post_init__(self) -> None:
        for name in ("embed_dim", "width", "layers", "heads", "max_words"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"TextConfig.{name} must be a positive integer, but got {value!r}")
        if self.width % self.heads:
            raise ConfigError(f"TextConfig.width {self.width} must be divisible by heads {self.heads}")
        if not 0 < self.init_temperature < 1:
            raise ConfigError(
                f"TextConfig.init_temperature must lie in (0, 1), but got {self.init_temperature}"
            )


class TextEncoder(nn.Module):
    """Word ids [B, L] -> unit-norm text embeddings [B, embed_dim] (the ``<cls>`` token's output)."""

    def __init__(self, vocab_size: int, config: TextConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, config.width, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(config.max_words, config.width) * 0.01)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, 2 * config.width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.proj = nn.Linear(config.width, config.embed_dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions[: ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=ids == 0)
        return F.normalize(self.proj(self.norm(x[:, 0])), dim=-1)


class ImageProjection(nn.Module):
    """Pooled stage features [B, C] (any C <= ``max_in``) -> unit-norm image embeddings [B, embed_dim]."""

    def __init__(self, max_in: int, embed_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(max_in, embed_dim, bias=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.linear(pooled, self.linear.weight[:, : pooled.shape[1]]), dim=-1)


class ImageText(nn.Module):
    """Text encoder, image projections keyed by stage, and the learned temperature."""

    def __init__(self, vocab: Vocabulary, config: TextConfig, stage_widths: dict[int, int]) -> None:
        super().__init__()
        self.vocab, self.config = vocab, config
        self.stage_widths = dict(stage_widths)
        self.text = TextEncoder(len(vocab), config)
        self.image = nn.ModuleDict(
            {str(s): ImageProjection(w, config.embed_dim) for s, w in stage_widths.items()}
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=math.log(100.0)).exp()

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        ids = self.vocab.encode(texts, self.config.max_words).to(self.logit_scale.device)
        return self.text(ids)

    def embed_image(self, features: torch.Tensor, stage: int) -> torch.Tensor:
        """Embeddings of a stage's feature map [B, C, h, w] (global average pool, then the projection)."""
        return self.image[str(stage)](features.float().mean(dim=(2, 3)))


def save_image_text(model: ImageText, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``text_encoder.safetensors`` and ``text_encoder.json`` into ``directory`` (atomically)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors = directory / "text_encoder.safetensors"
    tmp = tensors.with_name(tensors.name + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT})
    os.replace(tmp, tensors)
    meta = {"format": FORMAT, "config": asdict(model.config), "vocabulary": model.vocab.tokens,
            "stage_widths": {str(k): v for k, v in model.stage_widths.items()}, "prompt": PROMPT,
            "temperature": float(1.0 / model.scale().detach()), **(extra or {})}  # fmt: skip
    doc = directory / "text_encoder.json"
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, doc)
    return tensors


def load_image_text(directory: str | Path) -> ImageText:
    """The ``ImageText`` saved by :func:`save_image_text` in ``directory`` (eval mode); RunError if unusable."""
    from safetensors.torch import load_file

    directory = Path(directory)
    doc, tensors = directory / "text_encoder.json", directory / "text_encoder.safetensors"
    if not doc.is_file() or not tensors.is_file():
        raise RunError(
            f"no text encoder in {directory}; pretrain one with `compress pretrain --out {directory}`"
        )
    try:
        meta = json.loads(doc.read_text())
        if meta.get("format") != FORMAT:
            raise RunError(f"{doc} has format {meta.get('format')!r}; this toolkit reads {FORMAT}")
        model = ImageText(
            Vocabulary(meta["vocabulary"]),
            TextConfig(**meta["config"]),
            {int(k): int(v) for k, v in meta["stage_widths"].items()},
        )
        model.load_state_dict(load_file(str(tensors)))
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"cannot load the text encoder in {directory}: {type(exc).__name__}: {exc}") from None
    return model.eval()
