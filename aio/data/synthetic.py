"""A seeded FX tick simulator (labelled synthetic in every output).

The day is built on a one-minute grid in UTC; London, New York and Tokyo wall
clocks come from zoneinfo, so sessions move with daylight saving:

- activity (tick rate and volatility) follows the sessions: thin in Asia, rising at
  the London open, highest in the London/New York overlap, fading into the New
  York afternoon, a dip around the 17:00 New York rollover;
- the spread is wider in Asia and much wider around the rollover, narrower in the
  overlap; quotes sit on the instrument's point grid with ask > bid;
- the market is closed from Friday 17:00 to Sunday 17:00 New York (no ticks);
  the price keeps drifting slowly underneath, so Sunday opens with a gap;
- volatility clusters: a persistent stochastic log-volatility (AR(1), half-life
  about a day) times a two-state calm/turbulent regime (Markov switching), and
  the log price is weakly mean-reverting (Ornstein-Uhlenbeck, half-life in days).

``plant`` (aio/data/plant.py) adds a known edge on top: a rule in the strategy language,
evaluated causally at each bar's close while the ticks are generated, after which the
price drifts a given number of pips (compensated elsewhere, so the unconditional drift
stays zero); the label and ``meta["plant"]`` name it.

Per minute the close of the mid price is an AR(1) (``scipy.signal.lfilter``); the
ticks inside a minute are a Brownian bridge between consecutive closes at sorted
uniform random times, so everything is vectorised numpy. Same seed, same frame.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import structlog

from aio.config import param
from aio.data.base import synthetic_label, utc_range_ns
from aio.data.plant import PlantConfig, PlantPath, describe, plant_path, summary
from aio.errors import ConfigError
from aio.quality import NY, check_ticks, fx_closed, local_ns
from aio.records import NS_PER_HOUR, NS_PER_MINUTE, MarketData, pip_size

log = structlog.get_logger(__name__)

TRADING_MINUTES_PER_YEAR = 52 * 5 * 1440  # the annualisation of FX volatility
NS_PER_MS = 1_000_000


@dataclass
class SyntheticDataConfig:
    """Seeded synthetic FX ticks with sessions, weekend gaps and clustered volatility."""

    # The section names its plugin (conf/<group>/synthetic.yaml says name: synthetic); a plugin-shipped
    # node without a YAML is offered to Hydra as is, so the name belongs to the schema.
    name: str = param("synthetic", choices=["synthetic"], help="the plugin")

    symbol: str = param("EURUSD", help="label and pip size (JPY quotes: pip 0.01)")
    start: str = param("2024-03-04", help="first UTC date or datetime, inclusive")
    end: str = param("2024-03-18", help="UTC date or datetime, exclusive")
    seed: int = param(42, ge=0, help="same seed -> identical ticks")
    base_price: float = param(1.0850, gt=0, help="starting mid price, also the mean-reversion level")
    annual_vol: float = param(0.07, gt=0, le=2.0, help="annualised volatility of the mid (0.07 = 7%)")
    spread_pips: float = param(0.6, ge=0, le=100, help="mean bid-ask spread over all ticks, in pips")
    ticks_per_minute: float = param(60.0, gt=0, le=6000, help="mean tick rate over trading time")
    mean_reversion_days: float = param(30.0, gt=0, help="half-life of the pull back to base_price, in days")
    vol_of_vol: float = param(0.35, ge=0, le=2.0, help="stationary std of the log-volatility")
    vol_half_life_hours: float = param(24.0, gt=0, help="persistence of volatility clusters")
    turbulent_vol_mult: float = param(1.8, ge=1.0, le=10.0, help="volatility multiplier of the turbulent regime")
    turbulent_hours: float = param(6.0, gt=0, help="mean duration of a turbulent spell")
    calm_hours: float = param(60.0, gt=0, help="mean duration of a calm spell")
    weekend_vol_ratio: float = param(0.02, ge=0, le=1.0, help="variance while closed, relative to trading time (weekend gaps)")
    mean_volume: float = param(1.0, gt=0, help="mean bid/ask volume per tick (millions, as Dukascopy)")
    plant: PlantConfig | None = param(None, help="a known edge to plant (aio/data/plant.py); null for none")

    def __post_init__(self) -> None:
        utc_range_ns(self.start, self.end)  # errors name data.start / data.end
        if self.spread_pips * pip_size(self.symbol) >= self.base_price:
            raise ConfigError(f"config key data.spread_pips={self.spread_pips} is larger than the price itself")


# -- the calendar (pure functions of UTC minute opens) ------------------------------


def _hour_of_day(local: np.ndarray) -> np.ndarray:
    """Fractional hour of the local wall clock."""
    return (local % (24 * NS_PER_HOUR)) / NS_PER_HOUR


def _window(hour: np.ndarray, a: float, b: float) -> np.ndarray:
    """Smooth bump over [a, b) local hours: 0 outside, ramps up/down over ~45 minutes."""
    inside = (hour >= a) & (hour < b)
    edge = np.minimum(hour - a, b - hour)
    return np.where(inside, np.clip(edge / 0.75, 0.0, 1.0), 0.0)


def session_profile(minutes: np.ndarray) -> dict[str, np.ndarray]:
    """Per UTC minute open: closed flag, relative activity and relative spread."""
    closed = fx_closed(minutes) | fx_closed(minutes + NS_PER_MINUTE - 1)
    h_ldn = _hour_of_day(local_ns(minutes, "Europe/London"))
    h_ny = _hour_of_day(local_ns(minutes, NY))
    h_tky = _hour_of_day(local_ns(minutes, "Asia/Tokyo"))
    tokyo = _window(h_tky, 9.0, 18.0)
    london = _window(h_ldn, 8.0, 17.0)
    newyork = _window(h_ny, 8.0, 17.0)
    overlap = np.minimum(london, newyork)
    # Tick rate / volatility weight: Asia thin, London and NY busy, the overlap busiest.
    activity = 0.30 + 0.35 * tokyo + 1.00 * london + 0.85 * newyork + 0.50 * overlap
    # The minutes around the 17:00 NY rollover are illiquid (and the Sunday open thin).
    to_roll = np.abs(((h_ny - 17.0 + 12.0) % 24.0) - 12.0)  # hours to the nearest 17:00 NY
    roll = to_roll < 0.25
    activity = np.where(roll, activity * 0.35, activity)
    # Spread: wide in Asia, narrow in the overlap, very wide at the rollover.
    spread = 1.55 - 0.25 * tokyo - 0.45 * london - 0.35 * newyork - 0.2 * overlap
    spread = np.where(to_roll < 0.5, spread * 2.0, spread)
    spread = np.where(roll, spread * 2.5, spread)
    activity = np.where(closed, 0.0, activity)
    return {"closed": closed, "activity": activity, "spread": np.maximum(spread, 0.3)}


# -- the simulator -------------------------------------------------------------------


def _regimes(rng: np.random.Generator, n: int, calm_min: float, turb_min: float) -> np.ndarray:
    """Two-state Markov chain on the minute grid, as alternating exponential spells."""
    mean = 0.5 * (calm_min + turb_min)
    k = int(n / mean * 2) + 8
    durs = np.empty(k)
    durs[0::2] = rng.exponential(calm_min, size=(k + 1) // 2)
    durs[1::2] = rng.exponential(turb_min, size=k // 2)
    start_turbulent = rng.random() < turb_min / (calm_min + turb_min)
    ends = np.cumsum(durs)
    while ends[-1] < n:  # rare: extend with more spells
        more = rng.exponential(mean, size=k)
        ends = np.concatenate([ends, ends[-1] + np.cumsum(more)])
    idx = np.searchsorted(ends, np.arange(n), side="right")
    turbulent = (idx % 2 == 1) ^ start_turbulent
    return turbulent


@dataclass
class Noise:
    """Every random draw of one simulation (the plant only adds a path on top of them)."""

    minutes: np.ndarray  # UTC minute opens (ns)
    x: np.ndarray  # per minute: the log-price noise path (OU around 0)
    counts: np.ndarray  # ticks per minute
    mi: np.ndarray  # per tick: its minute
    frac: np.ndarray  # per tick: position inside the minute's bridge, (0, 1]
    bridge: np.ndarray  # per tick: the Brownian bridge offset (log)
    ts: np.ndarray  # per tick: ns
    spread_pts: np.ndarray  # per tick: spread in points
    bid_vol: np.ndarray
    ask_vol: np.ndarray


def draw_noise(cfg: SyntheticDataConfig) -> Noise:
    """All random draws for ``cfg``; deterministic in ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    start, end = utc_range_ns(cfg.start, cfg.end)
    m0 = -(-start // NS_PER_MINUTE)  # first whole minute inside the range
    minutes = np.arange(m0, end // NS_PER_MINUTE, dtype=np.int64) * NS_PER_MINUTE
    n = minutes.size
    prof = session_profile(minutes)
    closed, act = prof["closed"], prof["activity"]
    trading = ~closed
    # Normalise the calendar so the mean over trading minutes is 1 (any range).
    act_mean = act[trading].mean() if trading.any() else 1.0
    act = act / act_mean

    from scipy.signal import lfilter  # here, not at import: scipy.signal costs ~0.6 s at every start

    # Volatility: calendar x persistent log-vol x regime, normalised to E[var factor] = 1.
    phi = 0.5 ** (1.0 / (cfg.vol_half_life_hours * 60.0))
    eta = cfg.vol_of_vol * np.sqrt(1 - phi * phi)
    logvol = lfilter([1.0], [1.0, -phi], eta * rng.standard_normal(n))
    logvol += cfg.vol_of_vol * rng.standard_normal() * phi  # stationary start
    p_turb = cfg.turbulent_hours / (cfg.turbulent_hours + cfg.calm_hours)
    turbulent = _regimes(rng, n, cfg.calm_hours * 60.0, cfg.turbulent_hours * 60.0)
    regime = np.where(turbulent, cfg.turbulent_vol_mult, 1.0)
    e_var = np.exp(2 * cfg.vol_of_vol**2) * ((1 - p_turb) + p_turb * cfg.turbulent_vol_mult**2)
    state = np.exp(logvol) * regime / np.sqrt(e_var)
    sigma_min = cfg.annual_vol / np.sqrt(TRADING_MINUTES_PER_YEAR)
    var_weight = np.where(closed, cfg.weekend_vol_ratio, act)  # variance per minute ∝ activity
    sigma = sigma_min * np.sqrt(var_weight) * state

    # Mid closes per minute: log price as an OU process around log(base_price).
    k = np.log(2) / (cfg.mean_reversion_days * 1440.0)
    x = lfilter([1.0], [1.0, -(1.0 - k)], sigma * rng.standard_normal(n))

    # Ticks per minute: Poisson, busier when volatile (a turbulent market quotes more).
    e_sqrt = np.exp(cfg.vol_of_vol**2 / 8) * ((1 - p_turb) + p_turb * np.sqrt(cfg.turbulent_vol_mult)) / e_var**0.25
    lam = cfg.ticks_per_minute * act * np.sqrt(state) / e_sqrt
    counts = rng.poisson(np.where(trading, lam, 0.0))
    total = int(counts.sum())
    mi = np.repeat(np.arange(n), counts)  # minute index of each tick
    first = np.repeat(np.cumsum(counts) - counts, counts)
    pos = np.arange(total) - first + 1  # 1..n_m within the minute
    frac = pos / counts[mi]

    # Brownian bridge from the previous close to this minute's close.
    z = rng.standard_normal(total)
    cz = np.cumsum(z)
    base = np.concatenate([[0.0], cz])[first]
    s = cz - base  # partial sums inside the minute
    s_end = np.repeat(s[np.cumsum(counts)[counts > 0] - 1], counts[counts > 0])
    bridge = (s - frac * s_end) * sigma[mi] / np.sqrt(counts[mi])

    # Times: sorted uniform offsets inside the minute at millisecond resolution.
    ms = np.sort(mi * 60_000 + rng.integers(0, 60_000, size=total))
    ts = minutes[0] + ms * NS_PER_MS if n else ms

    # Spread: session level x lognormal noise, on the point grid, at least one point.
    sp_level = prof["spread"][mi]
    noise = rng.lognormal(-0.5 * 0.3**2, 0.3, size=total)
    mean_level = sp_level.mean() if total else 1.0
    spread_pts = np.maximum(np.rint(cfg.spread_pips * 10 * sp_level / mean_level * noise), 1.0)
    vol_scale = cfg.mean_volume * np.sqrt(np.maximum(act[mi], 0.1))
    bid_vol = np.round(rng.gamma(2.0, 0.5, size=total) * vol_scale, 2) + 0.01
    ask_vol = np.round(rng.gamma(2.0, 0.5, size=total) * vol_scale, 2) + 0.01
    return Noise(minutes=minutes, x=x, counts=counts, mi=mi, frac=frac, bridge=bridge, ts=ts.astype(np.int64),
                 spread_pts=spread_pts, bid_vol=bid_vol, ask_vol=ask_vol)


def _quotes(cfg: SyntheticDataConfig, nz: Noise, x: np.ndarray, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask of ticks ``[a, b)`` on the point grid, given the per-minute log path ``x``."""
    point = pip_size(cfg.symbol) / 10
    mi = nz.mi[a:b]
    x_prev = np.where(mi > 0, x[np.maximum(mi - 1, 0)], 0.0)
    logmid = np.log(cfg.base_price) + x_prev + nz.frac[a:b] * (x[mi] - x_prev) + nz.bridge[a:b]
    bid_pts = np.rint(np.exp(logmid) / point - nz.spread_pts[a:b] / 2)
    return bid_pts * point, (bid_pts + nz.spread_pts[a:b]) * point


def assemble(cfg: SyntheticDataConfig, nz: Noise) -> tuple[pl.DataFrame, PlantPath | None]:
    """The tick frame from the draws, with the plant (if any) generated causally on top."""
    x, path = nz.x, None
    if cfg.plant is not None:
        def tick_mid(xs: np.ndarray, a: int, b: int) -> np.ndarray:
            bid, ask = _quotes(cfg, nz, xs, a, b)
            return (bid + ask) / 2.0  # as aio.bars builds mid bars

        path = plant_path(cfg.plant, minutes=nz.minutes, counts=nz.counts, x_noise=nz.x, tick_mid=tick_mid,
                          tick_volume=nz.bid_vol + nz.ask_vol, pip=pip_size(cfg.symbol))
        x = nz.x + path.y
    bid, ask = _quotes(cfg, nz, x, 0, len(nz.mi))
    frame = pl.DataFrame({"ts_event": nz.ts, "bid": bid, "ask": ask, "bid_volume": nz.bid_vol, "ask_volume": nz.ask_vol})
    return frame, path


def simulate_ticks(cfg: SyntheticDataConfig) -> pl.DataFrame:
    """The tick frame (TICK_SCHEMA) for ``cfg``; deterministic in ``cfg.seed``."""
    return assemble(cfg, draw_noise(cfg))[0]


class SyntheticSource:
    """Seeded synthetic FX ticks (bid/ask), labelled synthetic."""

    def __init__(self, cfg: SyntheticDataConfig | None = None):
        self.cfg = cfg or SyntheticDataConfig()

    def load(self) -> MarketData:
        t0 = time.perf_counter()
        frame, path = assemble(self.cfg, draw_noise(self.cfg))
        pip = pip_size(self.cfg.symbol)
        label = synthetic_label(self.cfg.seed)
        meta: dict = {"seed": self.cfg.seed, "config": asdict(self.cfg), "volume_units": "millions (simulated)"}
        if path is not None:
            meta["plant"] = summary(self.cfg.plant, path, pip)
            label = f"{label}; {describe(self.cfg.plant)} ({len(path.events)} events)"
            if len(path.events) < 30:
                # too few events to find, or to judge a finding: say so where it is generated
                log.warning("the plant fired rarely", events=len(path.events), when=self.cfg.plant.when,
                            hint="widen data.start/data.end, loosen data.plant.when or raise data.plant.lookback_bars")
        meta["synthetic"] = label
        quality = check_ticks(frame, pip=pip)
        quality.update(source="synthetic", synthetic=label)
        log.info("synthetic ticks generated", ticks=frame.height, seed=self.cfg.seed,
                 plant_events=None if path is None else len(path.events),
                 elapsed_s=round(time.perf_counter() - t0, 3))
        return MarketData(
            kind="ticks",
            frame=frame,
            symbol=self.cfg.symbol.upper().replace("/", ""),
            synthetic=True,
            point=pip / 10,
            pip=pip,
            source="synthetic",
            meta=meta,
            quality=quality,
        )


def register(registry) -> None:
    registry.add("data", "synthetic", SyntheticSource, config=SyntheticDataConfig,
                 description="seeded synthetic FX ticks (sessions, spreads, weekend gaps), labelled synthetic")
