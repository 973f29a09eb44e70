"""``pcloud bench pflow``: learned per-track cell segmentation against rule-based and trivial particle flow.

Recipe (seed 002: JetPointNet on rho and Delta events; ATLAS rule-based particle flow as the reference):

1. Events: the built-in gun in the ``atlas`` geometry (:func:`pcloud.pflow.samples.mixture_truth` +
   :func:`pcloud.sim.events.simulate_events`), rho+- -> pi+- pi0 and Delta++/+ -> N pi parents: a standard
   component (1-3 parents, the 2nd and 3rd at DeltaR 0.02-0.3 from the first) and a dense component (share
   ``dense_fraction``, default 30 %: 2-3 parents at DeltaR 0.02-0.15) that populates DeltaR < 0.1.
   Event number = generation index. ``--generator pythia-tau|pythia-dijet`` (optional ``pythia8mc``) uses
   Pythia8 Z/gamma* -> tau tau (hadronic tau decays) or QCD dijets (pT-hat ``pythia_pt_hat_gev``) instead, final-state
   particles in |eta| < 1.4 (:func:`pcloud.sim.events.generate_pythia_events`); the gun settings are then unused.
2. Splits by event number (:class:`pcloud.data.splits.Splits`, seeded, saved as ``splits.json``): train/val/test.
3. Learned models: :class:`pcloud.pflow.learned.FocalTrackSegmenter` (``pointnet``, ``dgcnn``, ``transformer``,
   ``gravnet``, ``cellgraph``; the per-mode list of :data:`PFLOW_MODES` or ``--models``), trained on train,
   early-stopped on val;
   each used with iterative and common inference (:mod:`pcloud.pflow.inference`). Training recipe (``--recipe``,
   :data:`~pcloud.bench.pflow.config.RECIPE`): ``new`` = clouds of the topo-clustered cells with E > 0, soft target
   with the per-cell cross-entropy, AdamW (Loshchilov & Hutter, arXiv:1711.05101) with linear warm-up + cosine decay
   timed to the model's budget, decision threshold chosen on the validation events; ``legacy`` = the recipe before
   issue 11 (every cell of the cone, energy-weighted loss, Adam at a constant rate, threshold 0.5). Every model is
   trained with ``--seeds`` training seeds (events and splits fixed): the metrics are the seeds' mean with the
   spread (sample std, min, max) of the headline ones; with several seeds the seeds' mean fraction is also a method
   (``<model>_ensemble_*``, :class:`~pcloud.pflow.learned.SegmenterEnsemble`). The whole-event
   :class:`~pcloud.pflow.learned.ChargedFractionSegmenter` (``event_pointnet``: charged fraction per cell, given to
   the nearest track at the cell's layer). In full mode (or with ``--ablation``) a PointNet ablation of targets and
   losses (binary target + cross-entropy, hard 3-class target + focal loss) with iterative inference. The oracle
   segmenter (true focal fractions) is the upper bound.
4. Baselines on the same test events: :func:`~pcloud.baselines.particle_flow.rule_based` (topo-clusters + ATLAS E/p cell
   subtraction), :func:`~pcloud.baselines.particle_flow.dr_nearest`, :func:`~pcloud.baselines.particle_flow.random_baseline` (charged
   prior from the training split) and :func:`~pcloud.baselines.particle_flow.trivial` (training-split majority class).
5. Every method's Attribution must conserve energy to 1e-6 GeV (:func:`pcloud.metrics.particle_flow.energy_conservation`);
   metrics (:func:`pcloud.metrics.particle_flow.evaluate_attribution`) on the topo-clustered cells of the test events,
   overall, in bins of DeltaR to the nearest other particle, and in the dedicated dense summary (DeltaR < 0.1).
6. MLTree round trip: the test events and their topo-clusters are written with :func:`pcloud.io.mltree.write_mltree`
   (TTrees with the ``root`` extra, else RNTuples; cluster cells >= 5 MeV as in Athena), read back, and
   events/tracks/stored cells/energies/truth compared.

Modes (:data:`PFLOW_MODES`): ``quick`` (600 events, 2 epochs, PointNet and DGCNN, one seed; < 5 min on 2 CPU
cores; track clouds cut at 128 points), ``medium`` (3000 events, 8 epochs, the four models with per-model time
budgets checked after each epoch, 3 seeds), ``large`` (8000 events, 20 epochs, PointNet with a 12 min budget, 3
seeds) and full (4000 events, 15 epochs, the four models, no budgets, 3 seeds, ablation); medium, large and full
keep every point of the track clouds (``--max-points``; until 2026-11-26 they were cut at 256 points).

Outputs in ``--out``: ``results.json`` (``{"methods": {METHOD: {...}}, "config": {...}, ...}``), ``report.md``,
``splits.json``, ``test_events.root`` and PNG plots (metrics vs DeltaR, response, event displays).
"""
from __future__ import annotations

from .config import ABLATION_VARIANTS, BASELINES, CONSERVATION_TOL_GEV, LEARNED_MODELS, PFLOW_MODES, PYTHIA_GENERATORS, PflowConfig
from .events import generate_pflow_events
from .report import render_report
from .roundtrip import mltree_roundtrip
from .run import run_pflow

__all__ = ["PflowConfig", "PFLOW_MODES", "run_pflow", "generate_pflow_events", "mltree_roundtrip", "render_report",
           "LEARNED_MODELS", "BASELINES", "ABLATION_VARIANTS", "CONSERVATION_TOL_GEV", "PYTHIA_GENERATORS"]
