"""Validation records: how well the final supernet ranked the nets of one latency band against
stand-alone training, each keyed by the scope it was measured on.

A run's verdict may say more than "cannot tell" only when a record covers the run's own scope
(:class:`Scope`: space, data, fidelity, weight-path setting, table and budget band) and that
record validates (:meth:`RankingRecord.objections` is empty):

- it was measured on fresh nets and seeds, after its setting was chosen (a setting chosen
  among several on the same nets and then reported on them is favoured by the choice);
- its noise ceiling, the agreement ρ_AB of two stand-alone trainings of the same nets, has a
  95 % interval wholly above :data:`MIN_RHO_AB`: below it, stand-alone training does not rank
  the band's nets and nothing can be validated against it;
- its intervals drop no resampling draw (a bootstrap that discards the draws where ρ_AB ≤ 0
  reports an upper bound the data never gave);
- the scorer's corrected ρ is ≥ :data:`MIN_RHO` with its interval above 0.

``bench/ranking.py`` measures a record; ``bench/fidelity.py`` measures at which training
fidelity the noise ceiling clears the bar at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

MIN_RHO_AB = 0.3  # the noise ceiling's interval must lie above this
MIN_RHO = 0.5  # the scorer's corrected ρ must reach this, with its interval above 0
BAND_TOLERANCE = 0.05  # bands whose tops differ by at most this share of the range match


@dataclass(frozen=True)
class Scope:
    """What a search's supernet, and so its in-band ranking, depends on."""

    space: str
    dataset: str
    data_limit: int | None  # training (and test) images the search read; None: all
    warmup_epochs: int
    epochs: int
    weight_paths: str  # :func:`weight_paths_key`
    table: str
    band: float  # the band's top (the budget derived under) as a share of the way from the
    #              space's fastest net to its slowest on ``table``

    def differences(self, other: Scope) -> list[str]:
        """The fields in which ``other`` differs from this scope, in words."""
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "band":
                if abs(mine - theirs) > BAND_TOLERANCE:
                    out.append(f"band {100 * theirs:.0f} % not {100 * mine:.0f} %")
            elif mine != theirs:
                out.append(f"{f.name.replace('_', ' ')} {theirs} not {mine}")
        return out

    def describe(self) -> str:
        images = "all" if self.data_limit is None else f"{self.data_limit:,}"
        return (f"{self.space} on {self.dataset} ({images} images, {self.warmup_epochs} + "
                f"{self.epochs} epochs, {self.weight_paths} paths), band top at "
                f"{100 * self.band:.0f} % on {self.table}")


def weight_paths_key(weight_paths: str, path_prior: str, path_floor: float) -> str:
    """A search's weight-path setting as one word, e.g. ``budget:family:0.9``."""
    if weight_paths != "budget":
        return weight_paths
    return f"budget:{path_prior}:{path_floor:g}"


@dataclass(frozen=True)
class RankingRecord:
    """The final supernet's ranking of ``scope``'s band nets against stand-alone training:
    Spearman ρ with the two-seed stand-alone mean, corrected for that mean's noise
    (Spearman–Brown), with its 95 % interval over the nets; and the noise ceiling ρ_AB."""

    scope: Scope
    rho: float
    low: float
    high: float
    rho_ab: float
    rho_ab_low: float
    rho_ab_high: float
    complete_interval: bool  # no resampling draw was dropped from any interval
    fresh: bool  # measured on nets and seeds that played no part in choosing the setting
    measured: str  # command, date and host

    def objections(self) -> list[str]:
        """Why this record validates nothing, in words; empty when it validates."""
        out = []
        if not self.rho_ab_low > MIN_RHO_AB:
            out.append(f"two stand-alone trainings of the same nets agree at ρ_AB "
                       f"{self.rho_ab:+.2f} [{self.rho_ab_low:+.2f}, {self.rho_ab_high:+.2f}], "
                       f"an interval reaching below {MIN_RHO_AB}")
        if not self.fresh:
            out.append("it was measured on the nets its setting was chosen on")
        if not self.complete_interval:
            out.append("its bootstrap dropped the draws where ρ_AB ≤ 0")
        if not (self.rho >= MIN_RHO and self.low > 0):
            out.append(f"corrected ρ {self.rho:+.2f} [{self.low:+.2f}, {self.high:+.2f}] is "
                       f"below {MIN_RHO} or its interval reaches 0")
        return out

    @property
    def validated(self) -> bool:
        return not self.objections()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"validated": self.validated, "objections": self.objections()}


def _ranking_2026_12_01(weight_paths: str, rho: float, low: float, high: float) -> RankingRecord:
    """``bench/ranking.py --nets 20 --epochs 4`` (results/ranking-2026-12-01.md): 20 nets of
    the main job's band, stand-alone 4 epochs on 2,700 Fashion-MNIST images, ρ_AB 0.32; the
    weight-path default was chosen among these settings on the same nets."""
    scope = Scope("hybrid-cifar", "fashion-mnist", 3000, 1, 2, weight_paths, "cpu", 0.15)
    return RankingRecord(scope, rho, low, high, 0.32, -0.16, 0.67, complete_interval=False,
                         fresh=False, measured="bench/ranking.py, 20 band nets, 2026-12-01, "
                                               "AMD EPYC family 25 model 17")


RECORDS: tuple[RankingRecord, ...] = (
    _ranking_2026_12_01("budget:family:0.9", 0.75, 0.21, 2.04),
    _ranking_2026_12_01("budget:net:0.9", -0.38, -1.38, 0.33),
    _ranking_2026_12_01("budget:net:0", -0.39, -1.38, 0.44),
    _ranking_2026_12_01("uniform", 0.86, 0.46, 2.14),
)


def nearest_record(scope: Scope, records: tuple[RankingRecord, ...] | None = None
                   ) -> tuple[RankingRecord | None, list[str]]:
    """The record of ``records`` (default :data:`RECORDS`) closest to ``scope`` (fewest
    differing fields; a covering one has none) and how it differs; (None, []) without any."""
    records = RECORDS if records is None else records
    if not records:
        return None, []
    best = min(records, key=lambda r: len(scope.differences(r.scope)))
    return best, scope.differences(best.scope)
