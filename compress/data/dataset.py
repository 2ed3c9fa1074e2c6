"""``MultiTaskDataset``: a whole multi-task data set as tensors in memory.

The training loop indexes these tensors directly (no DataLoader workers): at 128 px the default built-in
set is 150 MB, and one ``batch`` call is a few gathers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from compress.errors import DataError

__all__ = ["MultiTaskDataset"]

_FIELDS = ("images", "tags", "boxes", "box_labels", "saliency")


class MultiTaskDataset:
    """Images with their tags, boxes and saliency masks, all at one square resolution ``R``.

    Attributes:
        images: uint8 [N, 3, R, R].
        tags: float32 multi-hot [N, C]: the categories present in each image.
        boxes: float32 [N, K, 4] boxes ``(x0, y0, x1, y1)`` in pixels of the R x R image, zero padded.
        box_labels: int64 [N, K] category index per box, ``-1`` for padding.
        saliency: uint8 {0, 1} [N, 1, R, R]: the union of all object masks.
        categories: the C category names, in label order.
        captions: per image, its captions (COCO caption files; the built-in scenes have five), or ``None``
            when the data set has no caption files.
        resolution: R.
    """

    def __init__(
        self,
        *,
        images: torch.Tensor,
        tags: torch.Tensor,
        boxes: torch.Tensor,
        box_labels: torch.Tensor,
        saliency: torch.Tensor,
        categories: Sequence[str],
        captions: Sequence[Sequence[str]] | None = None,
    ) -> None:
        self.images = images
        self.tags = tags
        self.boxes = boxes
        self.box_labels = box_labels
        self.saliency = saliency
        self.categories = list(categories)
        self.captions = None if captions is None else [list(c) for c in captions]
        self.resolution = int(images.shape[-1]) if images.dim() == 4 else 0
        self._check()

    def _check(self) -> None:
        """Reject tensors whose shapes or dtypes disagree (a ``DataError`` naming the field)."""
        n, c, r = self.images.shape[0], len(self.categories), self.resolution
        k = self.boxes.shape[1] if self.boxes.dim() == 3 else -1
        want = {
            "images": (torch.uint8, (n, 3, r, r)),
            "tags": (torch.float32, (n, c)),
            "boxes": (torch.float32, (n, k, 4)),
            "box_labels": (torch.int64, (n, k)),
            "saliency": (torch.uint8, (n, 1, r, r)),
        }
        for name, (dtype, shape) in want.items():
            t = getattr(self, name)
            if t.dtype != dtype or tuple(t.shape) != shape:
                raise DataError(
                    f"MultiTaskDataset.{name} must be {dtype} {list(shape)}, "
                    f"but got {t.dtype} {list(t.shape)}"
                )
        if self.captions is not None and len(self.captions) != n:
            raise DataError(f"MultiTaskDataset.captions must hold {n} lists, but got {len(self.captions)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"MultiTaskDataset({len(self)} images, {self.resolution}px, {len(self.categories)} categories, "
            f"<= {self.max_boxes} boxes/image)"
        )

    @property
    def num_classes(self) -> int:
        """C, the number of categories."""
        return len(self.categories)

    @property
    def max_boxes(self) -> int:
        """K, the padded number of boxes per image."""
        return int(self.boxes.shape[1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        """One image's tensors (uint8 image and mask, as stored)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return {name: getattr(self, name)[index] for name in _FIELDS}

    def batch(self, indices: Sequence[int] | torch.Tensor) -> dict[str, torch.Tensor]:
        """A training batch: ``images`` and ``saliency`` as float32 (images in [0, 1], masks in {0, 1}).

        ``tags``, ``boxes`` and ``box_labels`` are as stored (float32, float32, int64).
        """
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return {
            "images": self.images[idx].float().div_(255.0),
            "tags": self.tags[idx],
            "boxes": self.boxes[idx],
            "box_labels": self.box_labels[idx],
            "saliency": self.saliency[idx].float(),
        }

    def subset(self, indices: Sequence[int] | torch.Tensor) -> MultiTaskDataset:
        """A new data set holding only ``indices`` (copies), with the same categories and resolution."""
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        captions = None if self.captions is None else [self.captions[i] for i in idx.tolist()]
        return MultiTaskDataset(
            **{name: getattr(self, name)[idx] for name in _FIELDS},
            categories=self.categories,
            captions=captions,
        )

    def to(self, device: str | torch.device) -> MultiTaskDataset:
        """The same data set with every tensor on ``device`` (e.g. a GPU for fast batching)."""
        return MultiTaskDataset(
            **{name: getattr(self, name).to(device) for name in _FIELDS},
            categories=self.categories,
            captions=self.captions,
        )

    def state(self) -> dict[str, object]:
        """Plain tensors and strings (``compress._safeio.save_state`` stores it without pickle)."""
        state = {**{name: getattr(self, name) for name in _FIELDS}, "categories": list(self.categories)}
        if self.captions is not None:
            state["captions"] = [list(c) for c in self.captions]
        return state

    @classmethod
    def from_state(cls, state: dict[str, object]) -> MultiTaskDataset:
        """Rebuild a data set from :meth:`state`."""
        return cls(**state)  # type: ignore[arg-type]
