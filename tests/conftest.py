"""Shared fixtures: fixed PRNG seeds, x64 for the tight checks, scipy references."""

import contextlib
import ctypes
import gc
from collections.abc import Iterator

import jax
import numpy as np
import pytest
from scipy.integrate import solve_ivp

# The command-line tools split a CPU into one JAX device per core unless a count was
# chosen (`repalign_jax.use_host_cores`); calling them in this process must not change
# the device count under the other tests, so it is chosen here: one (JAX's default).
# Tests of several devices run in subprocesses (test_sharding.py, test_sweep.py).
jax.config.update("jax_num_cpu_devices", 1)
# The tools turn on JAX's persistent compilation cache (`enable_compile_cache`); called in
# this process they must not write every executable the suite compiles into the user's
# cache (thousands: jaxlib 0.10.2 once crashed serialising one, in a CI run of the whole suite).
# The cache itself is tested in subprocesses (test_atlas.py).
jax.config.update("jax_enable_compilation_cache", False)


#: Above this resident size (after freed memory went back) a finished test module empties JAX's caches.
RSS_LIMIT_MB = 1500


def _rss_mb() -> float:
    """This process's resident size in MB (Linux; 0 where /proc is not there)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0.0


def _trim() -> None:
    """Hand memory freed by XLA's compiler back to the system (glibc keeps it otherwise)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@pytest.fixture(autouse=True)
def _return_freed_memory():
    """After every test (a few ms): the whole suite in one process once grew to 7 GB, most of it
    memory the compiler had freed (about 600 MB after the first fit compiled)."""
    yield
    _trim()


@pytest.fixture(scope="module", autouse=True)
def _bound_compiled_programs():
    """The compiled programs (about 50 MB each) stay until JAX's caches are cleared. A module's
    tests share theirs, and modules that train the same shapes share them too, so the caches are
    cleared only between modules, once the process holds more than `RSS_LIMIT_MB`."""
    yield
    if _rss_mb() > RSS_LIMIT_MB:
        jax.clear_caches()
        gc.collect()
        _trim()


try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _LIBC.malloc_trim  # noqa: B018 (glibc only)
except (OSError, AttributeError):
    _LIBC = None


BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"  # JAX's event: one per XLA executable


@contextlib.contextmanager
def count_compilations() -> Iterator[list[str]]:
    """The XLA compilations made inside the block (JAX's monitoring events), one name per executable
    built (or loaded from the persistent compilation cache), e.g. `"jit(_segment)"`: a call that reuses
    an executable cached in this process adds nothing. Other jitted functions and eager operations
    called in the block count too: warm them up first, or count the name of interest."""
    seen: list[str] = []

    def listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
        if event == BACKEND_COMPILE:
            seen.append(str(kwargs.get("fun_name", "")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def compiles():
    """`count_compilations` over the whole test."""
    with count_compilations() as seen:
        yield seen


@pytest.fixture
def x64():
    """Run a test with float64 enabled (the tight closed-form and scipy checks)."""
    with jax.enable_x64(True):
        yield


def scipy_rhs(eta_enc, eta_dec, dx2, dy2):
    """docs/theory.md section 3, written out again independently of the package."""
    enc = eta_enc * dx2

    def rhs(t, s):
        h, y, w = s
        return [
            -enc * w,
            -w * (eta_dec * h + enc * y / h),
            -0.5 * eta_dec * h * (3 * w - y + dy2) - 0.5 * enc * w * (y + w) / h,
        ]

    return rhs


def scipy_solve(state0, eta_enc, eta_dec, dx2, dy2, ts, rtol=1e-12, atol=1e-15):
    """Reference solution by scipy's DOP853: `(3, T)`."""
    sol = solve_ivp(
        scipy_rhs(eta_enc, eta_dec, dx2, dy2),
        (ts[0], ts[-1]),
        state0,
        t_eval=ts,
        method="DOP853",
        rtol=rtol,
        atol=atol,
    )
    assert sol.success, sol.message
    return sol.y


def random_state(rng, dy2, h_range=(0.1, 2.0)):
    """A valid initial state (Cauchy-Schwarz: |y - w| <= sqrt(dy2 y))."""
    h0 = rng.uniform(*h_range)
    y0 = 10 ** rng.uniform(-9, -2)
    w0 = y0 - np.sqrt(dy2 * y0) * rng.uniform(-1, 1)
    return np.array([h0, y0, w0])


def paper_range_rates(rng, n):
    """`n` draws over the paper's range: eta in [1e-4, 1e-1], eta_dec / eta_enc in [0.1, 100]."""
    out = []
    while len(out) < n:
        eta_enc = 10 ** rng.uniform(-4, -1)
        eta_dec = eta_enc * 10 ** rng.uniform(-1, 2)
        if 1e-4 <= eta_dec <= 1e-1:
            out.append((eta_enc, eta_dec))
    return np.array(out)


@pytest.fixture(scope="session")
def synthetic():
    """Noise-free trajectories over the paper's range (see `make_synthetic`)."""
    return make_synthetic()


def make_synthetic():
    """Noise-free trajectories over the paper's range, 6000 epochs, made by scipy.

    Includes the corners of the range. Returns a dict of numpy arrays.
    """
    rng = np.random.default_rng(20240214)
    corners = np.array([[1e-4, 1e-4], [1e-4, 1e-2], [1e-1, 1e-1], [1e-2, 1e-3], [1e-3, 1e-1]])
    rates = np.concatenate([corners, paper_range_rates(rng, 7)])
    ts = np.arange(6001.0)
    dx2, dy2 = 1.0, 0.5
    states = []
    for eta_enc, eta_dec in rates:
        states.append(scipy_solve(random_state(rng, dy2), eta_enc, eta_dec, dx2, dy2, ts))
    states = np.array(states)  # (B, 3, T)
    # The paper's two-point task starts with m0 near 0.9 (outputs near 0, targets 0.6 and 1.3).
    tau = 10 ** rng.uniform(1, 3, len(rates))
    m0 = 10 ** rng.uniform(-1, 0, len(rates))
    t = ts - ts[0]
    loss = 0.5 * m0[:, None] * np.exp(-2 * t / tau[:, None]) + (dy2 - states[:, 1] + 2 * states[:, 2]) / 8
    return dict(
        ts=ts, h=states[:, 0], y=states[:, 1], w=states[:, 2], rates=rates, dx2=dx2, dy2=dy2, tau=tau, m0=m0, loss=loss
    )
