"""The one ``predict`` path of every generative module: seeds in, PNG files and a grid out.

A module mixes in :class:`GeneratorPredictMixin`, implements the generator protocol
(``sample(n, labels=None, generator=None, **kwargs) -> (n, C, H, W)`` in [-1, 1]) and sets
``self.predict_options`` (a :class:`PredictOptions`). Then, from the CLI::

    lightning-genaug predict --config examples/configs/ada.yaml --ckpt_path .../last.ckpt \\
        --model.predict.num_images 100 --model.predict.sample_kwargs '{truncation_psi: 0.7}'

or from Python (``trainer.predict(model)``), the module writes ``seed000000.png``, ... (one image per
seed, at the data's resolution) and ``grid.png`` (every image, upscaled with gaps, see
:func:`lightning_genaug.images.picture_grid`) to ``output_dir``, with the writer ``lightning-genaug
generate`` uses. The image of a seed is ``sample_seeds([seed], labels, **sample_kwargs)``, the one
function of the model family that draws a seed's image (``generate`` calls it too): the reference's
latents ``numpy.random.RandomState(seed).randn(1, z_dim)`` for StyleGAN2, and by default (the Sparse
Transformer's) ``sample(1, generator=torch.Generator(device).manual_seed(seed))``. It depends only on
its seed and class, whatever the batch size.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader

from lightning_genaug._checks import check_positive_int
from lightning_genaug.data.batch import split_batch
from lightning_genaug.images import save_picture_grid, save_seed_images
from lightning_genaug.runs import run_dir


@dataclass
class PredictOptions:
    """What ``predict`` generates and where it writes it.

    Args:
        num_images: images generated (seeds ``seed, ..., seed + num_images - 1``) when the datamodule
            has no predict loader of its own.
        seed: first seed.
        batch_size: seeds per predict batch.
        output_dir: folder of the PNG files and ``grid.png``; ``None``: ``predictions/`` in the run's
            folder (:func:`~lightning_genaug.runs.run_dir`: a new version folder per run with the CLI's
            logger, so runs never overwrite each other), else in ``default_root_dir``.
        sample_kwargs: extra arguments of the module's ``sample`` (``truncation_psi`` for the GANs;
            ``temperature``, ``use_cache`` for the Sparse Transformer).
    """

    num_images: int = 64
    seed: int = 0
    batch_size: int = 32
    output_dir: str | None = None
    sample_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive_int("num_images", self.num_images)
        check_positive_int("seed", self.seed, allow_zero=True)
        check_positive_int("batch_size", self.batch_size)
        self.sample_kwargs = dict(self.sample_kwargs or {})


class GeneratorPredictMixin:
    """``predict_dataloader``, ``predict_step`` and the grid, on top of :meth:`sample_seeds`.

    The mixing class sets ``self.predict_options`` in ``__init__`` and calls
    :meth:`lend_predict_dataloader` from ``setup``; it overrides :meth:`sample_seeds` when its family
    draws a seed's image its own way (StyleGAN2: the reference's latents).
    """

    predict_options: PredictOptions

    def sample_seeds(
        self, seeds: Sequence[int], labels: torch.Tensor | None = None, **sample_kwargs: Any
    ) -> torch.Tensor:
        """The image of each seed: ``sample(1, generator=torch.Generator(device).manual_seed(seed))``.

        What a seed means for a model family without its own rule (the Sparse Transformer's): image
        ``i`` is drawn alone from a generator seeded with ``seeds[i]`` on the module's device, so it
        depends only on its seed and class (CPU and CUDA generators draw different numbers).

        Args:
            seeds: non-negative ints, one image each.
            labels: int64 ``(len(seeds),)`` classes; ``None``: as ``sample`` draws them.
            **sample_kwargs: further arguments of ``sample`` (``temperature``, ``transform``, ...).

        Returns:
            ``(len(seeds), C, H, W)`` in [-1, 1] on the module's device.
        """
        return torch.cat(
            [
                self.sample(
                    1,
                    labels=None if labels is None else labels[index : index + 1].to(self.device),
                    generator=torch.Generator(device=self.device).manual_seed(int(seed)),
                    **sample_kwargs,
                )
                for index, seed in enumerate(seeds)
            ]
        )

    def lend_predict_dataloader(self, stage: str) -> None:
        """Give a datamodule without predict data this module's seed loader.

        LightningCLI attaches the datamodule, and Lightning then asks it (never the module) for
        predict data; a generator needs none but seeds, so it lends its own.
        """
        if stage != "predict":
            return
        datamodule = self.trainer.datamodule
        if datamodule is not None and not is_overridden("predict_dataloader", datamodule):
            datamodule.predict_dataloader = self.predict_dataloader

    def predict_dataloader(self) -> DataLoader:
        """Seeds ``seed, ..., seed + num_images - 1`` in batches of ``batch_size`` (one image per seed)."""
        options = self.predict_options
        seeds = list(range(options.seed, options.seed + options.num_images))
        return DataLoader(seeds, batch_size=options.batch_size)

    def on_predict_start(self) -> None:
        self._check_sample_kwargs()
        self._predicted: list[torch.Tensor] = []
        self._items_predicted = 0  # items of a datamodule's predict loader seen by this process

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """One image per seed, written as ``seed{seed:06d}.png`` to the predict folder.

        A batch of int seeds ``(B,)`` (the module's own loader) fixes each image's seed; any other
        batch (a datamodule's predict loader) yields one image per item, item ``k`` of the loader
        with seed ``seed + k`` (batches of any size, a short last one included; under DDP ``k``
        counts the items of Lightning's non-shuffling distributed sampler, rank ``r`` taking items
        ``r, r + world_size, ...``), classes taken from its labels. A class-conditional model without
        labels draws class ``seed % num_classes``. Image ``i`` is :meth:`sample_seeds` of its seed and
        class: the image ``lightning-genaug generate`` writes for them.

        Returns:
            ``(B, C, H, W)`` images in [-1, 1].
        """
        seeds, labels = self._predict_inputs(batch)
        num_classes = int(self.hparams.get("num_classes") or 0)
        if labels is None and num_classes > 0:
            labels = torch.as_tensor(seeds) % num_classes
        images = self.sample_seeds(seeds, labels, **self.predict_options.sample_kwargs)
        save_seed_images(images, seeds, self.predict_folder())
        self._predicted.append(images.cpu())
        return images

    def on_predict_epoch_end(self) -> None:
        """Write ``grid.png``: every predicted image of this process, in seed order."""
        if self._predicted:
            save_picture_grid(torch.cat(self._predicted), self.predict_folder() / "grid.png")
            self._predicted = []

    def predict_folder(self) -> Path:
        """``output_dir``, else ``predictions/`` in the run's folder (``runs.run_dir``), created."""
        output_dir = self.predict_options.output_dir
        if output_dir is None:
            output_dir = Path(run_dir(self.trainer)) / "predictions"
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _predict_inputs(self, batch: Any) -> tuple[list[int], torch.Tensor | None]:
        if isinstance(batch, torch.Tensor) and batch.ndim == 1 and not batch.is_floating_point():
            return batch.tolist(), None
        images, labels = split_batch(batch)
        world_size, rank = self.trainer.world_size, self.trainer.global_rank
        items = range(self._items_predicted, self._items_predicted + images.shape[0])
        self._items_predicted += images.shape[0]
        return [self.predict_options.seed + item * world_size + rank for item in items], labels

    def _check_sample_kwargs(self) -> None:
        parameters = inspect.signature(self.sample_seeds).parameters
        method = "sample_seeds"
        if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
            parameters, method = inspect.signature(self.sample).parameters, "sample"  # passed on to it
        named = {name for name, parameter in parameters.items() if parameter.kind != parameter.VAR_KEYWORD}
        accepted = named - {"n", "seeds", "labels", "generator"}
        unknown = sorted(set(self.predict_options.sample_kwargs) - accepted)
        if unknown:
            raise ValueError(
                f"`predict.sample_kwargs` has {unknown}, which {type(self).__name__}.{method}() does not "
                "take; "
                f"valid keys are: {', '.join(sorted(accepted)) or 'none'}."
            )


__all__ = ["GeneratorPredictMixin", "PredictOptions"]
