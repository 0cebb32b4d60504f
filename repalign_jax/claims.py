"""The paper's claims as data: what each figure asserts, quoted, and the test that decides it.

Each `Claim` records the figure or section, the paper's sentence quoted verbatim
from its text (`shared/seeds/002_86af288b2609196e.txt`; where the text lost a
formula the quote keeps the gap), the quantity measured, the test with its
threshold, why that test is a fair reading of the sentence, and the date the test
was fixed. Tests are fixed before their results are seen; a test changed after
results existed has an entry in `docs/claims-changelog.md` (date, reason, old and
new verdict). The verdicts themselves are computed from saved results by
`repalign_jax.verdicts`.

`python -m repalign_jax.reproduce claims` prints this registry.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Claim:
    """One of the paper's claims and the test that decides it.

    - `key`: `"experiment.name"`, unique; `experiment` is the `reproduce` experiment
      whose saved results the test reads.
    - `figure`: the paper's figure or section.
    - `short`: the claim in a few words (the report's summary table).
    - `quote`: the paper's sentence, verbatim.
    - `measures`: the quantity measured, from which runs.
    - `test`: the decision rule with its thresholds and the interval it uses.
    - `fair`: why the test reads the sentence fairly.
    - `fixed`: the date (ISO) the test was fixed.
    - `can_fail`: `False` for a statement that holds by construction; it is listed, marked,
      and never counted as reproduced.
    """

    key: str
    figure: str
    short: str
    quote: str
    measures: str
    test: str
    fair: str
    fixed: str
    can_fail: bool = True

    @property
    def experiment(self) -> str:
        return self.key.split(".", 1)[0]


#: The experiments of `python -m repalign_jax.reproduce`, in its order (the claims' `experiment`s).
EXPERIMENTS = (
    "universality",
    "gains",
    "final_distance",
    "xor",
    "feature_collapse",
    "digits",
    "depth",
    "adam",
    "random_features",
)

#: Thresholds the tests share (named once, quoted in the tests' text).
EXPLAINED_R2 = 0.9  # a curve "matches quite well": R^2 >= 0.9
TRAINED_LOSS = 1e-3  # a run trained (left its plateau and fitted): final loss <= 1e-3
LOG2_TOLERANCE = 0.5  # final-distance predictions within a factor sqrt(2) of h, in median
PLATEAU, DECAY = 0.7, 0.3  # plateau-shape measure: a plateau above 0.7, immediate decay below 0.3
MERGED, KEPT = 0.3, 0.7  # XOR merge ratio (sqrt(2) in input space): merged below 0.3, kept above 0.7
COLLAPSED, SQUARE = 0.1, 0.25  # irrelevant-feature variance fraction (0.5 for a 2-d square)
SINGLE_LINE = 0.9  # share of the representation's variance explained by the target alone

_2026_12_05 = "2026-12-05"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        key="universality.all_curves",
        figure="Figure 2",
        short="the theory fits h, y and w of every Table-1 network",
        quote="Despite only needing to fit two constants, the theory matches all three curves quite well for "
        "all networks.",
        measures="per seed, min(R^2 of h, R^2 of y, R^2 of w) of the Eq.-49 fit; per network the median over its "
        "trained seeds (final loss <= 1e-3)",
        test="every network's median >= 0.9 (95% bootstrap interval over seeds above 0.9); a network with no "
        "trained seed is a failed run; an interval crossing 0.9 is undecided",
        fair="'all three curves' are h, y and w, so the weakest of the three decides; 'quite well' read as "
        "R^2 >= 0.9, the rule the package used for h and y before; 'all networks' is every row of Table 1",
        fixed=_2026_12_05,
    ),
    Claim(
        key="universality.loss_fit",
        figure="Figure 11 (C.1)",
        short="Eq. 9 with a fitted tau fits the training loss of every network",
        quote="Just as with the dynamics of the 3-dimensional system, we can fit the loss expression from the "
        "theory Equation 9 to the training loss, amongst varying architectures, as is shown in Figure 11.",
        measures="per seed, R^2 of the loss of Eq. 9 with eta_enc, eta_dec fixed and tau fitted; per network the "
        "median over its trained seeds",
        test="every network's median >= 0.9 (95% bootstrap interval over seeds above 0.9)",
        fair="the sentence says the loss expression fits the training loss across architectures; the same "
        "R^2 rule as the three curves",
        fixed=_2026_12_05,
    ),
    Claim(
        key="gains.plateau_to_decay",
        figure="Figure 3 (top)",
        short="small gains plateau, large gains decay at once",
        quote="Such a transition from an initial plateau to immediate decay is observed experimentally, as can be "
        "seen in Figure 3 (top).",
        measures="per run, the shape S = 1 - max(0, -L'(0)) t_half / (L0 ln 2), clipped to [0, 1], of the "
        "representation loss L = (dy2 - y + 2w)/8 (the loss less its output-mean term, which decays "
        "exponentially at every gain); L'(0) over the first 1% of t_half; 0 for an exponential decay, near 1 "
        "for a plateau, whatever the learning rate; plateau in epochs and epochs x lr beside it",
        test="mean S at the smallest gain >= 0.7 and at the largest gain <= 0.3, each 95% bootstrap interval over "
        "seeds on its side; a run whose L never halves is a failed run",
        fair="'initial plateau' and 'immediate decay' are shapes of the curve, which S measures without the "
        "learning rate that each gain of the series sets differently (the plateau in epochs x lr falls "
        "10^4-fold with the learning rate alone)",
        fixed=_2026_12_05,
    ),
    Claim(
        key="gains.theory_breaks_down",
        figure="Figure 3, section 3.2",
        short="at the largest gains the theory stops matching",
        quote="Going to even larger initial weights, the representations start off far apart, so the linear "
        "approximation breaks down and the effective theory no longer matches the network.",
        measures="per run, min(R^2 of h, y, w); per gain the median over seeds",
        test="the smallest gain's median >= 0.9 and the largest gain's < 0.9, each 95% bootstrap interval over "
        "seeds on its side; the gain where it first falls below 0.9 is reported, not tested",
        fair="the sentence names no gain: it says the theory matches at small weights and not at 'even larger' "
        "ones, so the ends of the authors' gain series decide",
        fixed=_2026_12_05,
    ),
    Claim(
        key="final_distance.follows_h_inf",
        figure="Figure 5",
        short="final h follows h_inf from the rates fitted at one task",
        quote="By fitting these to the learning trajectories we can make predictions about the final "
        "representational, as shown in Figure 5.",
        measures="over the kept runs with ||dy|| > 0 (final loss <= 1e-3; one fresh initialisation per run), the "
        "median |log2(measured / predicted)| of the theory, and of three baselines on the same runs, each with "
        "its one constant fitted there (median ratio): a constant, c h0, c ||dy||; Pearson r and the slope "
        "through the origin beside it",
        test="the theory's score <= 0.5 (a factor sqrt(2) in h) and below every baseline's, each with its 95% "
        "bootstrap interval over seeds (resampled within grid points) on its side; fewer than 3 kept runs with "
        "||dy|| > 0 is a failed run",
        fair="a prediction worth the name must be close (a factor sqrt(2)) and must beat predictors that know "
        "nothing of the theory; r and a slope window do not discriminate (a ||dy||-only predictor reaches "
        "r 0.99 where final h scales wrongly with ||dx||); at ||dy|| = 0 h_inf is about h0 whatever the rates",
        fixed=_2026_12_05,
    ),
    Claim(
        key="xor.rich_merge",
        figure="Figure 6 (middle)",
        short="at low gain the equal-target pairs merge",
        quote="The theory predicts that at small initial weights, representations of datapoints with the same "
        "target output will merge, as is zero for such pairs.",
        measures="the merge ratio of the rich network: mean distance of the two equal-target pairs over the mean "
        "of the other four (sqrt(2) in input space), measured and predicted, per seed",
        test="measured mean ratio < 0.3 (95% bootstrap interval over seeds below 0.3) and predicted < 0.3; a run "
        "whose final loss stays above 1e-3 is a failed run",
        fair="merging is a ratio near 0; below 0.3 the equal-target pairs shrank 4.7-fold against the other "
        "pairs relative to the input geometry",
        fixed=_2026_12_05,
    ),
    Claim(
        key="xor.lazy_keeps",
        figure="Figure 6 (middle)",
        short="at high gain the pairs do not merge",
        quote="At large initial weights no such merging should occur.",
        measures="the merge ratio of the lazy network, measured and predicted, per seed",
        test="measured mean ratio > 0.7 (95% interval above 0.7) and predicted > 0.7",
        fair="no merging keeps at least half of the input-space ratio",
        fixed=_2026_12_05,
    ),
    Claim(
        key="xor.intermediate",
        figure="Figure 6 (middle)",
        short="at the intermediate gain the predicted distances match",
        quote="As can be seen in Figure 6 (middle), this matches the learned representation of the large "
        "20-layer default network.",
        measures="at the intermediate gain (1.25), the relative error ||d_meas - d_pred|| / ||d_meas|| over the 6 "
        "pairwise final distances, per seed; baselines with their scale fitted by least squares: the initial "
        "distances (nothing learned) and the rich limit sqrt(A_low) (equal-target pairs merged)",
        test="the theory's mean error <= 0.25 and below both baselines' (95% bootstrap intervals over seeds)",
        fair="between the limits neither 'merge' nor 'keep' describes the network, so the full h_inf formula must "
        "predict the distances better than either limit, which is what 'matches' can mean there",
        fixed=_2026_12_05,
    ),
    Claim(
        key="xor.two_layer",
        figure="Figure 6 (right)",
        short="the 2-layer network merges only one pair; the theory predicts both",
        quote="However, the theory fails to anticipate the merging of only one pair when the network is reduced "
        "to a two layer architecture, stressing the importance of the high model expressivity assumption "
        "(Figure 6 (right)).",
        measures="per seed, the smaller and the larger of the two equal-target pairs' ratios, measured and predicted",
        test="measured smaller < 0.3 and larger > 0.7 (95% intervals on their sides), predicted larger < 0.3",
        fair="one pair merged, the other kept, while the theory merges both",
        fixed=_2026_12_05,
    ),
    Claim(
        key="feature_collapse.rich_collapse",
        figure="Figures 7, 8",
        short="at low gain each context collapses its irrelevant feature",
        quote="The theory’s prediction at small initial weights is that for each context the representation will "
        "collapse along the feature direction which is irrelevant to the task, as the output label does not "
        "change along this direction.",
        measures="the irrelevant-feature variance fraction F of the final representation at the smallest gain "
        "(0.5 for a 2-d square, 0 when collapsed), per seed",
        test="mean F < 0.1 (95% bootstrap interval over seeds below 0.1)",
        fair="a collapse leaves the irrelevant feature under a tenth of the within-context spread, a fifth of "
        "what the 2-d square gives it",
        fixed=_2026_12_05,
    ),
    Claim(
        key="feature_collapse.lazy_keeps",
        figure="Figures 7, 8",
        short="at high gain each context keeps its 2-d square",
        quote="At large initial weights the representation will retain the input data structure, i.e. one 2-d "
        "square for each context.",
        measures="F of the final representation at the largest gain, per seed",
        test="mean F > 0.25 (95% interval above 0.25: at least half of the square's 0.5)",
        fair="retaining the square keeps both features' spread, so F stays near 0.5",
        fixed=_2026_12_05,
    ),
    Claim(
        key="feature_collapse.single_line",
        figure="Figure 12 (C.2)",
        short="at even lower gain the two contexts fall on one line",
        quote="Indeed, if we initialize even smaller, we find that the representation collapses to a single line, "
        "as can be seen in Figure 12.",
        measures="the share T of the final representation's variance explained by the target value alone (both "
        "contexts grouped by target), at the smallest and the next gain, per seed",
        test="mean T at the smallest gain >= 0.9 (95% interval above) and above T at the next gain (interval of "
        "the difference above 0)",
        fair="one line ordered by the target means the target alone places every point; two lines leave the "
        "context's share unexplained",
        fixed=_2026_12_05,
    ),
    Claim(
        key="adam.trajectories",
        figure="Figure 13 (C.3)",
        short="under Adam the theory fits the trajectories worse",
        quote="Indeed, as can be seen in Figure 13 the effective theory does not fit the dynamics of a neural "
        "network trained using Adam very well.",
        measures="per run, min(R^2 of h, y, w) clipped at -1, for the same gains and seeds under SGD and Adam",
        test="Adam's mean < 0.9 and below SGD's (95% bootstrap interval of the difference above 0)",
        fair="'does not fit very well' is a fit below the 'quite well' of Figure 2 and worse than gradient "
        "descent's on the same networks",
        fixed=_2026_12_05,
    ),
    Claim(
        key="adam.xor_merge",
        figure="Figures 14-16 (C.3)",
        short="under Adam the XOR equal-target pairs still merge",
        quote="As can be seen in Figure 14, Figure 15 and Figure 16 the representational predictions still hold "
        "up well.",
        measures="the XOR merge ratio of the low-gain network trained with Adam, per seed",
        test="mean ratio < 0.3 (95% interval below), the same threshold as under SGD; final loss above 1e-3 is a "
        "failed run",
        fair="the prediction that holds up is the merge of equal-target pairs, judged as under SGD",
        fixed=_2026_12_05,
    ),
    Claim(
        key="adam.blobs_collapse",
        figure="Figures 14-16 (C.3)",
        short="under Adam the blobs still collapse at low gain",
        quote="As can be seen in Figure 14, Figure 15 and Figure 16 the representational predictions still hold "
        "up well.",
        measures="F of the low-gain blobs network trained with Adam (lr 1e-3, the package's choice), per seed",
        test="mean F < 0.1 (95% interval below), the SGD rule",
        fair="the feature-collapse prediction judged as under SGD",
        fixed=_2026_12_05,
    ),
    Claim(
        key="adam.own_rates",
        figure="Figures 14-16 (C.3)",
        short="final h under Adam follows h_inf of each run's own rates",
        quote="As can be seen in Figure 14, Figure 15 and Figure 16 the representational predictions still hold "
        "up well.",
        measures="final h against h_inf from each run's own fitted rates",
        test="none: listed only",
        fair="cannot fail: rates fitted to a run's own trajectory reproduce its end point by construction "
        "(reported r 1.000)",
        fixed=_2026_12_05,
        can_fail=False,
    ),
    Claim(
        key="depth.enc_grows",
        figure="Figure 10",
        short="eta_enc grows with depth",
        quote="This should result in the effective learning rate for the encoder increasing with the depth and the "
        "effective learning rate for the decoder decreasing with the depth.",
        measures="Spearman correlation of layer and log eta_enc (the per-layer mean over seeds)",
        test="> 0.5 (95% bootstrap interval over seeds above 0.5)",
        fair="'increasing with depth' is a rank correlation; 0.5 asks for a clear trend, not a strict one",
        fixed=_2026_12_05,
    ),
    Claim(
        key="depth.dec_falls_later",
        figure="Figure 10",
        short="eta_dec falls over the later layers",
        quote="We can see that in Figure 10 this relationship holds for the later layers of the network, where the "
        "theory is accurate, although at earlier layers the effective learning rate for the decoder seems to "
        "increase.",
        measures="from the layer where the mean eta_dec peaks on: Spearman of layer and log eta_dec, and eta_dec "
        "last / peak",
        test="Spearman < -0.5 and last / peak < 0.8 (95% bootstrap intervals over seeds on their sides)",
        fair="the paper itself reads the figure as a rise then a fall; the later layers decide",
        fixed=_2026_12_05,
    ),
    Claim(
        key="depth.later_layers_accurate",
        figure="Figure 10 (red)",
        short="the theory is more accurate in later layers",
        quote="Indeed, as can be seen in Figure 10 (red) the effective theory models the learning behavior more "
        "accurately at the later layers.",
        measures="mean R^2 of h over the second half of the layers minus over the first half",
        test="> 0 (95% bootstrap interval over seeds above 0)",
        fair="'more accurately at the later layers' compares the two halves",
        fixed=_2026_12_05,
    ),
    Claim(
        key="digits.pair",
        figure="Figure 4",
        short="the theory follows a pair of MNIST digits",
        quote="As can be seen in Figure 4, the resulting dynamics still resemble the theory reasonably well.",
        measures="R^2 of h, y, w of the tracked 0 and 1 through MNIST training",
        test="min R^2 >= 0.9 in the median seed; only on MNIST (`--mnist DIR`)",
        fair="scikit-learn's 8 x 8 digits are another dataset: a result on them tests nothing the paper said",
        fixed=_2026_12_05,
    ),
    Claim(
        key="digits.structure",
        figure="Figure 9",
        short="exponential weighting predicts MNIST's hidden distances",
        quote="Nevertheless, in Figure 9 we see that part of the representational structure still resembles the "
        "theory when a network is trained on the MNIST dataset.",
        measures="Pearson r of the predicted and measured distances of the first 100 digits, with and without "
        "the within-digit blocks",
        test="r > 0.5 with, > 0.3 without the blocks; only on MNIST (`--mnist DIR`)",
        fair="scikit-learn's 8 x 8 digits are another dataset",
        fixed=_2026_12_05,
    ),
    Claim(
        key="random_features.spread_vanishes",
        figure="A.6",
        short="the randomness of h_inf vanishes as the gain shrinks",
        quote="We can see that as we take the limit of small initial weights , the distribution converges, "
        "removing any randomness in the final structure.",
        measures="the coefficient of variation (CV) of h_inf over 500 initialisations at each gain, and "
        "|mean h_inf - A_low| / A_low at the smallest gain",
        test="CV non-decreasing in the gain (to 1e-6) and larger at the largest gain than at the smallest; the "
        "relative deviation < 0.1; 95% bootstrap intervals over initialisations of the end CVs",
        fair="'removing any randomness' is a spread that shrinks to zero, onto the data-set value A_low",
        fixed=_2026_12_05,
    ),
    Claim(
        key="random_features.a_low_fixed",
        figure="A.6",
        short="A_low does not depend on the initialisation",
        quote="We can see that as we take the limit of small initial weights , the distribution converges, "
        "removing any randomness in the final structure.",
        measures="A_low over the initialisations",
        test="none: listed only",
        fair="cannot fail: A_low = sqrt(eta_enc/eta_dec) ||dx|| ||dy|| uses no initial quantity",
        fixed=_2026_12_05,
        can_fail=False,
    ),
)

_BY_KEY = {c.key: c for c in CLAIMS}


def claim(key: str) -> Claim:
    """The claim registered under `key`; `KeyError` names the known keys."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"no claim {key!r}; known: {', '.join(_BY_KEY)}") from None


def claims_of(experiment: str) -> tuple[Claim, ...]:
    """The claims whose test reads `experiment`'s saved results, in registry order."""
    return tuple(c for c in CLAIMS if c.experiment == experiment)


def format_registry(claims: tuple[Claim, ...] = CLAIMS) -> str:
    """The registry as text: one block per claim (what `reproduce claims` prints)."""
    blocks = []
    for c in claims:
        mark = "" if c.can_fail else "  [cannot fail: listed, never counted]"
        blocks.append(
            f"{c.key}  ({c.figure}; test fixed {c.fixed}){mark}\n"
            f"  claim:    {c.short}\n"
            f'  paper:    "{c.quote}"\n'
            f"  measures: {c.measures}\n"
            f"  test:     {c.test}\n"
            f"  fair:     {c.fair}\n"
        )
    return "\n".join(blocks)
