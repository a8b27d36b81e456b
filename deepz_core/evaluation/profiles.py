"""Survey profiles: the thresholds a photo-z is judged by, which depend on the survey.

E20 judges PAUS, a narrow-band survey, by strict outliers |Δz|/(1+z_s) > 0.02 (E20 eq. 5), ODDS in a
window of ±0.0015 around the mode (E20 Sec. 6.2) and the PAUS target σ68 <= 0.0035(1+z) for the
best 50%. A broad-band survey (SDSS, LSST, HSC) reaches σ68 ~ 0.02-0.05: by those numbers every
galaxy is an outlier and every ODDS ~ 0.001. A profile holds the thresholds; one is stored per run
(its ``card.json``, editable) and chosen from the bands by default (``profile_for_bands``).

>>> from deepz_core.evaluation.profiles import profile_for_bands, survey_profile
>>> profile_for_bands(["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"]).name
'broad-band'
>>> survey_profile("narrow-band").outlier, survey_profile("narrow-band").odds_window
(0.02, 0.003)
>>> survey_profile({"name": "custom", "outlier": 0.05, "target": None}).outlier
0.05
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from deepz_core.configs import Config, check_choice, check_real
from deepz_core.errors import ConfigError

PROFILE_NAMES = ("narrow-band", "broad-band", "custom")
NARROW_MIN = 5  # bands narrower than 300 A (or named NB*) that make a catalogue narrow-band


@dataclass(frozen=True)
class SurveyProfile(Config):
    """Thresholds of the metrics, all on Δz/(1+z_s) except the ODDS window (an absolute Δz).

    ``outlier``: the headline outlier threshold (narrow-band: E20's strict 0.02); ``catastrophic``:
    the conventional 0.15, shown beside it; ``odds_window``: total width of the ODDS integral
    around the mode (E20 eq. 7: 0.003); ``target``: σ68 the best ``target_fraction`` of the
    galaxies should reach (PAUS: 0.0035), None for no target line.

    >>> import deepz_core as dz
    >>> dz.SurveyProfile(name="custom", outlier=0.05, odds_window=0.02, target=None).label
    'custom: outliers |Δz|/(1+z) > 0.05, ODDS window ±0.01'
    """

    name: str = "narrow-band"
    outlier: float = 0.02
    catastrophic: float = 0.15
    odds_window: float = 0.003
    target: float | None = 0.0035
    target_fraction: float = 0.5

    CONFIG_NAME: ClassVar[str] = "survey profile"

    def __post_init__(self) -> None:
        check_choice("name", self.name, PROFILE_NAMES)
        for field in ("outlier", "catastrophic", "odds_window"):
            self._set(field, check_real(field, getattr(self, field), 0.0, 1.0, low_open=True))
        if self.target is not None:
            self._set("target", check_real("target", self.target, 0.0, 1.0, low_open=True))
        self._set(
            "target_fraction",
            check_real("target_fraction", self.target_fraction, 0.0, 1.0, low_open=True),
        )

    @property
    def label(self) -> str:
        """One line for the pages, e.g. 'narrow-band: outliers |Δz|/(1+z) > 0.02, ODDS ±0.0015'."""
        return (
            f"{self.name}: outliers |Δz|/(1+z) > {self.outlier:g}, ODDS window "
            f"±{self.odds_window / 2:g}"
            + ("" if self.target is None else f", target σ68 ≤ {self.target:g}(1+z)")
        )

    @property
    def outlier_label(self) -> str:
        """'strict outliers (|Δz|/(1+z) > 0.02)' or 'outliers (|Δz|/(1+z) > 0.15)'."""
        strict = "strict " if self.outlier < self.catastrophic else ""
        return f"{strict}outliers (|Δz|/(1+z) > {self.outlier:g})"

    @property
    def outlier_short(self) -> str:
        """'strict outliers > 0.02': the label of a metric tile (short, never cut)."""
        strict = "strict " if self.outlier < self.catastrophic else ""
        return f"{strict}outliers > {self.outlier:g}"

    @property
    def shows_catastrophic(self) -> bool:
        """Whether the catastrophic rate is a second number (not the headline one again)."""
        return self.catastrophic != self.outlier

    def window_range(self) -> tuple[float, float]:
        """(low, high) of an ODDS-window control: 0.001 up to 4 windows, at least 0.05.

        >>> import deepz_core as dz
        >>> dz.SurveyProfile(odds_window=0.02).window_range(), dz.SurveyProfile().window_range()
        ((0.001, 0.08), (0.001, 0.05))
        """
        return 0.001, max(0.05, round(4 * self.odds_window, 3))


PROFILES: dict[str, SurveyProfile] = {
    "narrow-band": SurveyProfile(),
    # σ68 of broad-band photo-z is ~0.02-0.05(1+z): a window of ±0.05 holds the peak of a good p(z)
    "broad-band": SurveyProfile(
        name="broad-band", outlier=0.15, catastrophic=0.15, odds_window=0.1, target=None
    ),
}


def survey_profile(value: SurveyProfile | str | Mapping[str, Any] | None) -> SurveyProfile:
    """A profile from itself, a standard name ('narrow-band', 'broad-band') or a mapping (a
    'custom' profile's fields; unknown fields refused). None gives the narrow-band profile (E20)."""
    if value is None:
        return PROFILES["narrow-band"]
    if isinstance(value, SurveyProfile):
        return value
    if isinstance(value, str):
        if value not in PROFILES:
            raise ConfigError(
                f"profile: expected one of {tuple(PROFILES)} or a custom profile's fields, "
                f"got {value!r}"
            )
        return PROFILES[value]
    if isinstance(value, Mapping):
        return SurveyProfile.from_dict(value)
    raise ConfigError(f"profile: expected a name or a mapping of fields, got {value!r}")


def narrow_band_count(bands: Iterable[str]) -> int:
    """How many of ``bands`` are narrow (FWHM < 300 A; unknown names count when they start NB)."""
    from deepz_core.sed.bands import get_band, has_band

    return sum(
        get_band(b).is_narrow if has_band(b) else b.strip().upper().startswith("NB") for b in bands
    )


def profile_for_bands(bands: Iterable[str]) -> SurveyProfile:
    """The default profile of a catalogue: narrow-band when it has at least ``NARROW_MIN`` narrow
    bands (PAUS: 40), else broad-band."""
    name = "narrow-band" if narrow_band_count(bands) >= NARROW_MIN else "broad-band"
    return PROFILES[name]


def profile_of_odds_window(window: str | float | None) -> SurveyProfile | None:
    """The standard profile whose ODDS window is ``window`` (a predictions file's ``DZODDSW``:
    a run's window is its profile's, ``jobs.training_run.grid_covering``), None for another or
    no window."""
    try:
        value = float(window) if window not in (None, "") else math.nan
    except (TypeError, ValueError):
        return None
    found = [p for p in PROFILES.values() if math.isclose(p.odds_window, value, rel_tol=1e-6)]
    return found[0] if len(found) == 1 else None


def run_profile(card: Mapping[str, Any], bands: Iterable[str]) -> SurveyProfile:
    """The profile a run is judged by: the one stored in its card (``RunDir.card()``), else the
    default for its ``bands``."""
    stored = card.get("profile")
    return survey_profile(stored) if stored else profile_for_bands(bands)
