"""Sample-quality metrics as pure functions of feature tensors (no Lightning, no extractor).

Every function takes features already extracted from images (``(N, D)`` tensors), so it can be
used from any training loop and tested on constructed inputs. Statistics are computed in
float64: Frechet distances of good models are small differences of large traces.
"""

from __future__ import annotations

import torch

from lightning_genaug._checks import check_positive_int


def _check_features(name: str, features: torch.Tensor, *, min_rows: int = 1) -> torch.Tensor:
    if not isinstance(features, torch.Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"`{name}` must be a 2-D tensor of shape (N, D), got {shape}.")
    if features.shape[0] < min_rows:
        raise ValueError(f"`{name}` needs at least {min_rows} rows (samples), got {features.shape[0]}.")
    return features


def gaussian_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of a set of features, in float64.

    ``mu = mean_i x_i`` and ``sigma = sum_i (x_i - mu)(x_i - mu)^T / (N - 1)``.

    Args:
        features: ``(N, D)`` with ``N >= 2``.

    Returns:
        ``(mu, sigma)`` of shapes ``(D,)`` and ``(D, D)``, float64.

    >>> mu, sigma = gaussian_statistics(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    >>> mu.tolist(), sigma.tolist()
    ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    features = _check_features("features", features, min_rows=2).to(torch.float64)
    mu = features.mean(dim=0)
    centred = features - mu
    sigma = centred.T @ centred / (features.shape[0] - 1)
    return mu, sigma


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def frechet_distance(
    mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor
) -> torch.Tensor:
    """Squared Frechet (2-Wasserstein) distance between two Gaussians; FID on Inception features.

    ``d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    The trace of the matrix square root is computed without a general ``sqrtm``:
    ``sigma1 sigma2`` is similar to the symmetric PSD matrix ``A = sigma1^(1/2) sigma2 sigma1^(1/2)``,
    so ``Tr((sigma1 sigma2)^(1/2)) = sum_k sqrt(lambda_k(A))``, with eigenvalues from ``eigvalsh``
    in float64 and round-off negatives clamped to 0. This is stable for rank-deficient covariances
    (fewer samples than dimensions), where ``scipy.linalg.sqrtm`` returns complex noise.

    Args:
        mu1: ``(D,)`` mean of the first set.
        sigma1: ``(D, D)`` covariance of the first set.
        mu2: ``(D,)`` mean of the second set.
        sigma2: ``(D, D)`` covariance of the second set.

    Returns:
        A 0-d float64 tensor, ``>= 0`` up to round-off.

    >>> eye = torch.eye(2, dtype=torch.float64)
    >>> float(frechet_distance(torch.zeros(2), eye, torch.ones(2), 4 * eye))
    4.0
    """
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    sigma1, sigma2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(
            f"`mu1` and `mu2` must be vectors of one shape (D,), got {tuple(mu1.shape)} and "
            f"{tuple(mu2.shape)}."
        )
    dim = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (dim, dim):
            raise ValueError(
                f"`{name}` must have shape ({dim}, {dim}) to match the means, got {tuple(sigma.shape)}."
            )
    sqrt_sigma1 = _sqrt_psd(sigma1)
    inner = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt_product = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()
    return (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt_product


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """The KID kernel ``k(x, y) = (x . y / D + coef0) ^ degree``.

    Args:
        x: ``(N, D)``.
        y: ``(M, D)``.

    Returns:
        ``(N, M)`` kernel matrix in the dtype of ``x``.
    """
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef0: float = 1.0) -> torch.Tensor:
    """Unbiased estimate of the squared MMD between the distributions of ``x`` and ``y``.

    ``MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
    - 2/(mn) sum_{i, j} k(x_i, y_j)`` with the polynomial kernel of :func:`polynomial_kernel`.
    Its expectation is exactly 0 when both sets come from one distribution, so single
    estimates can be negative.

    Args:
        x: ``(m, D)`` with ``m >= 2``.
        y: ``(n, D)`` with ``n >= 2``.

    Returns:
        A 0-d float64 tensor.
    """
    x = _check_features("x", x, min_rows=2).to(torch.float64)
    y = _check_features("y", y, min_rows=2).to(torch.float64)
    m, n = x.shape[0], y.shape[0]
    k_xx = polynomial_kernel(x, x, degree, coef0)
    k_yy = polynomial_kernel(y, y, degree, coef0)
    k_xy = polynomial_kernel(x, y, degree, coef0)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - 2 * k_xy.mean()


def kernel_inception_distance(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    num_subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 averaged over random subsets.

    For each of ``num_subsets`` draws, ``subset_size`` rows are taken without replacement from each
    set and :func:`mmd2_unbiased` (cubic polynomial kernel) is computed; KID is the mean over
    draws, reported with the standard deviation. Unlike FID it is unbiased, so it suits small sets.

    Args:
        real_features: ``(N_r, D)``.
        fake_features: ``(N_f, D)``.
        num_subsets: number of random subsets.
        subset_size: rows per subset, at most ``min(N_r, N_f)``.
        generator: CPU generator for the subset draws (reproducible results).

    Returns:
        ``(mean, std)``, 0-d float64 tensors (``std`` is 0 for one subset).
    """
    check_positive_int("num_subsets", num_subsets)
    check_positive_int("subset_size", subset_size)
    _check_features("real_features", real_features, min_rows=2)
    _check_features("fake_features", fake_features, min_rows=2)
    available = min(real_features.shape[0], fake_features.shape[0])
    if subset_size > available or subset_size < 2:
        raise ValueError(
            f"`subset_size` must be in [2, min(#real, #fake)] = [2, {available}], got {subset_size}; "
            "lower `subset_size` or use more samples."
        )
    estimates = []
    for _ in range(num_subsets):
        real_rows = torch.randperm(real_features.shape[0], generator=generator)[:subset_size]
        fake_rows = torch.randperm(fake_features.shape[0], generator=generator)[:subset_size]
        real_subset = real_features[real_rows.to(real_features.device)]
        fake_subset = fake_features[fake_rows.to(fake_features.device)]
        estimates.append(mmd2_unbiased(real_subset, fake_subset))
    values = torch.stack(estimates)
    std = values.std(unbiased=False) if num_subsets > 1 else torch.zeros((), dtype=torch.float64)
    return values.mean(), std


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Inception Score (Salimans et al. 2016): ``exp(E_x KL(p(y|x) || p(y)))``.

    ``p(y|x) = softmax(logits)``; ``p(y)`` is the mean of ``p(y|x)`` within each of ``splits``
    equal chunks; the score is computed per chunk and reported as mean and standard deviation.
    It ranges from 1 (every sample has the same class distribution) to the number of classes
    (confident, evenly spread predictions).

    Args:
        logits: ``(N, K)`` class logits, ``N >= splits``.
        splits: number of chunks.

    Returns:
        ``(mean, std)``, 0-d float64 tensors.

    >>> confident = 20.0 * torch.eye(4).repeat(5, 1)
    >>> round(float(inception_score(confident, splits=1)[0]), 3)
    4.0
    """
    check_positive_int("splits", splits)
    _check_features("logits", logits, min_rows=splits)
    log_probs = torch.log_softmax(logits.to(torch.float64), dim=1)
    scores = []
    for chunk in log_probs.chunk(splits, dim=0):
        log_marginal = torch.logsumexp(chunk, dim=0) - torch.log(
            torch.tensor(float(chunk.shape[0]), dtype=torch.float64)
        )
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1)
        scores.append(kl.mean().exp())
    values = torch.stack(scores)
    std = values.std(unbiased=False) if splits > 1 else torch.zeros((), dtype=torch.float64)
    return values.mean(), std


def _kth_neighbour_radii(features: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself excluded)."""
    radii = []
    for chunk in features.split(batch_size):
        distances = torch.cdist(chunk, features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the 1st is the point itself (0)
    return torch.cat(radii)


def _fraction_inside_manifold(
    queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Fraction of ``queries`` inside the union of balls ``B(support_i, radii_i)``."""
    inside = []
    for chunk in queries.split(batch_size):
        inside.append((torch.cdist(chunk, support) <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(inside).to(torch.float64).mean()


def precision_recall(
    real_features: torch.Tensor, fake_features: torch.Tensor, k: int = 3, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) from k-NN manifold estimates.

    Each set's manifold is the union of balls centred on its samples with radius the distance to
    the sample's k-th nearest neighbour in the same set. Precision is the fraction of generated
    samples inside the real manifold (fidelity); recall is the fraction of real samples inside
    the generated manifold (coverage).

    Args:
        real_features: ``(N_r, D)`` with ``N_r > k``.
        fake_features: ``(N_f, D)`` with ``N_f > k``.
        k: neighbourhood size (3 in the paper).
        batch_size: rows per pairwise-distance block (memory ``batch_size x N``).

    Returns:
        ``(precision, recall)``, 0-d float64 tensors in [0, 1].
    """
    check_positive_int("k", k)
    check_positive_int("batch_size", batch_size)
    real = _check_features("real_features", real_features, min_rows=k + 1).to(torch.float64)
    fake = _check_features("fake_features", fake_features, min_rows=k + 1).to(torch.float64)
    real_radii = _kth_neighbour_radii(real, k, batch_size)
    fake_radii = _kth_neighbour_radii(fake, k, batch_size)
    precision = _fraction_inside_manifold(fake, real, real_radii, batch_size)
    recall = _fraction_inside_manifold(real, fake, fake_radii, batch_size)
    return precision, recall
