"""Exact resume: where a training pass stands and every random state of the process, in the checkpoint.

Lightning saves the ``state_dict`` of a training DataLoader that has one in each checkpoint and
hands it back to ``load_state_dict`` when ``fit`` resumes (its stateful data loading). The loaders
of this package use that to make ``fit(ckpt_path="last.ckpt")`` continue exactly as the
uninterrupted run would have:

* :class:`ResumableRandomSampler` shuffles each pass from ``(seed, epoch)`` alone, so a resumed
  run draws the same order, and can start a pass part-way;
* :class:`ResumableDataLoader` keeps the batches yielded in the current pass, and
  :class:`RandomStatesInCheckpoint` (mixed into it and into the streaming loader) the random
  states of the process (torch CPU and CUDA, numpy, ``random``: the latents, augmentations and
  noise every module draws); they are put back just before the first resumed batch reaches the
  training step.

Where exactness cannot hold (under DDP, where Lightning swaps in its own ``DistributedSampler``) a
warning says so at resume.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, RandomSampler


def rng_states() -> dict[str, Any]:
    """The states of every random number generator a training step may draw from.

    Only tensors, numbers and tuples, so that ``torch.load(weights_only=True)`` reads them back.
    """
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "random": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what :func:`rng_states` returned (a CUDA state only where CUDA is in use)."""
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    torch.set_rng_state(states["torch"])
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["random"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def loader_generator(seed: int) -> torch.Generator:
    """The generator of a DataLoader's worker seeds, so that starting a pass leaves the global one alone.

    Without it every ``iter(loader)`` draws a seed from torch's global generator, and a resumed run
    (which starts one pass more than the uninterrupted run) would draw differently from there on.
    """
    return torch.Generator().manual_seed(seed)


class ResumableRandomSampler(RandomSampler):
    """A random order per pass drawn from ``(seed, epoch)`` alone; a pass can start part-way.

    Lightning calls :meth:`set_epoch` before every pass. Outside Lightning, a completed pass moves
    on to the next epoch by itself. Under DDP Lightning replaces this sampler (it is a
    ``RandomSampler``) by its ``DistributedSampler``, as it did the plain one.

    Args:
        data_source: the dataset (only its length is used).
        seed: the seed of every pass's order.
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0
        self.start = 0  # the position in the order where the next pass starts (after a resume)

    def set_epoch(self, epoch: int) -> None:
        """Draw the order of ``epoch`` next (a pass of another epoch starts from its beginning)."""
        if epoch != self.epoch:
            self.epoch, self.start = epoch, 0

    def order(self) -> torch.Tensor:
        """The order of the current epoch's pass.

        >>> ResumableRandomSampler(range(5), seed=1).order().sort().values.tolist()
        [0, 1, 2, 3, 4]
        """
        seed = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        return torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(seed))

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        yield from self.order()[start:].tolist()
        self.epoch += 1


class RandomStatesInCheckpoint:
    """Mixin for a stateful DataLoader: its state also holds the process's random states.

    They are put back once the next pass has fetched its first batch (after the loader's own draws,
    e.g. worker seeds) and before the batch reaches the training step, or before the next pass when
    the saved pass had ended.
    """

    _pending_rng: dict[str, Any] | None = None
    _saved_pass_ended = False

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "rng": rng_states()}  # type: ignore[misc]
        generator = self.generator  # type: ignore[attr-defined]
        return state if generator is None else {**state, "loader_rng": generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self._pending_rng = state.pop("rng", None)
        loader_rng = state.pop("loader_rng", None)
        if loader_rng is not None and self.generator is not None:  # type: ignore[attr-defined]
            self.generator.set_state(loader_rng)  # type: ignore[attr-defined]
        super().load_state_dict(state)  # type: ignore[misc]

    def __iter__(self) -> Iterator[Any]:
        pending, self._pending_rng = self._pending_rng, None
        if pending is not None and self._saved_pass_ended:
            set_rng_states(pending)
            pending = None
        for batch in super().__iter__():  # type: ignore[misc]
            if pending is not None:
                set_rng_states(pending)
                pending = None
            yield batch


class _PassPosition:
    """The place in the current pass of a map-style DataLoader with a :class:`ResumableRandomSampler`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches = 0  # batches yielded in the current pass
        self._pass_epoch: int | None = None  # its epoch (workers may run the sampler into the next one)
        self._saved_pass: dict[str, Any] | None = None  # the state loaded, until the next pass starts

    def __iter__(self) -> Iterator[Any]:
        sampler = self.sampler  # type: ignore[attr-defined]
        saved, self._saved_pass = self._saved_pass, None
        if (
            saved is not None
            and isinstance(sampler, ResumableRandomSampler)
            and sampler.epoch != saved["epoch"]
        ):
            epoch, batches, total = saved["epoch"], saved["batches"], len(self)  # type: ignore[arg-type]
            rank_zero_warn(
                f"The checkpoint ends epoch {epoch} after {batches} of its {total} batches (an epoch-end "
                f"checkpoint of an epoch that `max_steps` cut short); Lightning resumes at epoch "
                f"{sampler.epoch}, so the rest of epoch {epoch} is skipped: the resumed run is not exactly "
                "the uninterrupted one. Checkpoints written at a training batch (`KimgCheckpoint`, whose "
                "last.ckpt holds the end of every run, or `ModelCheckpoint(every_n_train_steps=N)`) resume "
                "exactly."
            )
        resumable = isinstance(sampler, ResumableRandomSampler)
        self._pass_epoch = sampler.epoch if resumable else None  # read before the pass starts
        self._batches = (sampler.start if resumable else 0) // self.batch_size  # type: ignore[attr-defined]
        for batch in super().__iter__():  # type: ignore[misc]
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        pass_ended = self._batches >= len(self)  # type: ignore[arg-type]
        return {"epoch": self._pass_epoch, "batches": self._batches, "pass_ended": pass_ended}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sampler = self.sampler  # type: ignore[attr-defined]
        self._saved_pass_ended = bool(state_dict["pass_ended"])
        if not isinstance(sampler, ResumableRandomSampler):
            rank_zero_warn(
                f"Resuming with a {type(sampler).__name__} (Lightning's own under DDP): the interrupted "
                "epoch's order is not replayed, so the resumed run is not exactly the uninterrupted one."
            )
        elif not self._saved_pass_ended:
            sampler.set_epoch(state_dict["epoch"])
            sampler.start = state_dict["batches"] * self.batch_size  # type: ignore[attr-defined]
            self._saved_pass = state_dict


class ResumableDataLoader(RandomStatesInCheckpoint, _PassPosition, DataLoader):
    """A DataLoader that Lightning checkpoints: the place in the pass and the process's random states.

    Takes the arguments of :class:`~torch.utils.data.DataLoader`; give it a
    :class:`ResumableRandomSampler` to shuffle. After ``load_state_dict`` the next pass skips the
    batches already trained on and restores the random states just before its first batch is used.
    """
