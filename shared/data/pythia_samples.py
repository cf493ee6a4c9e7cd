"""Pythia 8 settings for every stand-in sample, kept as data (SPEC §1.3b).

Each sample is a dict with
  ``beam_energy``  centre-of-mass energy in GeV,
  ``settings``     Pythia `readString` lines (process, kinematics, decays),
  ``mpi``          whether multi-parton interactions are on,
  ``label``        the truth label written to the file,
  ``kind``         'jet' (top-tagging layout) or 'event' (LHCO layout).
`COMMON` lines are added to every sample; the seed lines are added at run time.
"""
import copy
import hashlib
import json

COMMON = [
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Init:showChangedSettings = off",
    "Init:showChangedParticleData = off",
    "Init:showProcesses = off",
]

_TOPTAG_WINDOW = ["PhaseSpace:pTHatMin = 500", "PhaseSpace:pTHatMax = 800"]

# Hard-process window for the 150-300 GeV dark-jet selection.
_DARK_WINDOW = ["PhaseSpace:pTHatMin = 120", "PhaseSpace:pTHatMax = 400"]

_LIGHT_QQ = [(1, -1), (2, -2), (3, -3), (4, -4)]

SAMPLES = {
    # QCD jets for the top-tagging stand-in (14 TeV, no MPI, like the reference dataset).
    "qcd": {
        "beam_energy": 14000.0,
        "mpi": False,
        "label": 0,
        "kind": "jet",
        "settings": ["HardQCD:all = on"] + _TOPTAG_WINDOW,
    },
    # All-hadronic ttbar: W -> hadrons only.
    "top": {
        "beam_energy": 14000.0,
        "mpi": False,
        "label": 1,
        "kind": "jet",
        "settings": [
            "Top:gg2ttbar = on",
            "Top:qqbar2ttbar = on",
            "24:onMode = off",
            "24:onIfAny = 1 2 3 4 5",
        ]
        + _TOPTAG_WINDOW,
    },
    # Hidden-valley Z'(1.4 TeV) -> dark quarks (75 GeV); dark mesons (150 GeV) -> q qbar.
    "zprime": {
        "beam_energy": 14000.0,
        "mpi": False,
        "label": 1,
        "kind": "jet",
        "settings": [
            "HiddenValley:ffbar2Zv = on",
            "4900023:m0 = 1400",
            "4900023:mMin = 1200",
            "4900023:mMax = 1600",
            "4900023:onMode = off",
            "4900023:onIfAny = 4900101",
            "HiddenValley:Ngauge = 3",
            "HiddenValley:nFlav = 1",
            "HiddenValley:FSR = on",
            "HiddenValley:fragment = on",
            "HiddenValley:Lambda = 10",
            "HiddenValley:pTminFSR = 11",
            "4900101:m0 = 75",
            "4900111:m0 = 150",
            "4900113:m0 = 150",
            "4900211:m0 = 150",
            "4900213:m0 = 150",
            # The dark mesons' q qbar channels are off by default (they would be invisible).
            "4900111:onMode = on",
            "4900113:onMode = on",
            "4900211:onMode = on",
            "4900213:onMode = on",
        ],
    },
    # LHCO R&D background: QCD dijets at 13 TeV with MPI.
    "lhco_qcd": {
        "beam_energy": 13000.0,
        "mpi": True,
        "label": 0,
        "kind": "event",
        "settings": ["HardQCD:all = on", "PhaseSpace:pTHatMin = 1000"],
    },
    # LHCO R&D signal: W'(3.5 TeV) -> X(500, charged) Y(100, neutral), X, Y -> q qbar'.
    "lhco_wprime": {
        "beam_energy": 13000.0,
        "mpi": True,
        "label": 1,
        "kind": "event",
        "settings": [
            "NewGaugeBoson:ffbar2Wprime = on",
            "34:m0 = 3500",
            "34:mMin = 3000",
            "34:mMax = 4000",
            # New resonances: id:new = name antiName spinType chargeType(3q) colType m0 width mMin mMax tau0
            "9000024:new = X+ X- 3 3 0 500.0 1.0 450.0 550.0 0.0",
            "9000024:isResonance = on",
            "9000024:oneChannel = 1 0.5 100 2 -1",
            "9000024:addChannel = 1 0.5 100 4 -3",
            "9000023:new = Y void 3 0 0 100.0 1.0 90.0 110.0 0.0",
            "9000023:isResonance = on",
            "9000023:oneChannel = 1 0.25 100 1 -1",
            "9000023:addChannel = 1 0.25 100 2 -2",
            "9000023:addChannel = 1 0.25 100 3 -3",
            "9000023:addChannel = 1 0.25 100 4 -4",
            # W'+ -> X+ Y conserves charge; W'- -> X- Y follows by charge conjugation.
            "34:oneChannel = 1 1.0 100 9000024 9000023",
        ],
    },
    # --- Dark-jet benchmarks of "What's anomalous in LHC jets?" (13 TeV, MPI on, like the
    # papers' MadGraph + Pythia 8.2 chain; the hard processes here are Pythia's own).
    # QCD background for both dark-jet signals: light-quark/gluon jets, 150 < pT < 300 GeV.
    "darkqcd": {
        "beam_energy": 13000.0,
        "mpi": True,
        "label": 0,
        "kind": "jet",
        "settings": ["HardQCD:all = on"] + _DARK_WINDOW,
    },
    # Semi-visible jets ("Aachen"): Z'(2 TeV) -> dark quarks (0.5 GeV) of an SU(3) dark sector
    # with 2 flavours; dark pions 4 GeV, dark rhos 5 GeV. Only the flavour-diagonal dark rho
    # decays back to q qbar (the Z'-rho mixing of the paper); the diagonal dark pion and the
    # off-diagonal mesons are stable and invisible. Visible fraction of the dark mesons
    # ~ probVector / nFlav = 0.25, i.e. r_inv ~ 0.75 (measured: docs/baselines.md).
    "semivisible": {
        "beam_energy": 13000.0,
        "mpi": True,
        "label": 1,
        "kind": "jet",
        "settings": [
            "HiddenValley:ffbar2Zv = on",
            "4900023:m0 = 2000",
            "4900023:mMin = 1500",
            "4900023:mMax = 2500",
            "4900023:onMode = off",
            "4900023:onIfAny = 4900101",
            "HiddenValley:Ngauge = 3",
            "HiddenValley:nFlav = 2",
            "HiddenValley:probVector = 0.5",
            "HiddenValley:FSR = on",
            "HiddenValley:fragment = on",
            "HiddenValley:alphaOrder = 1",
            "HiddenValley:setLambda = on",
            "HiddenValley:Lambda = 2.0",
            "HiddenValley:pTminFSR = 2.2",
            "4900101:m0 = 0.5",
            "4900111:m0 = 4",
            "4900211:m0 = 4",
            "4900113:m0 = 5",
            "4900213:m0 = 5",
            "4900111:mayDecay = off",
            "4900113:onMode = on",
        ],
    },
    # Two-prong-like dark quarks ("Heidelberg"): pair-produced Dv (50 GeV, colour and dark
    # colour), Dv -> d + qv (5 GeV); qv hadronises into 10 GeV dark mesons that all decay back
    # to q qbar (one flavour: r_inv ~ 0). Pythia's default HV masses except the Dv mass.
    "twoprong": {
        "beam_energy": 13000.0,
        "mpi": True,
        "label": 1,
        "kind": "jet",
        "settings": [
            "HiddenValley:gg2DvDvbar = on",
            "HiddenValley:qqbar2DvDvbar = on",
            "4900001:m0 = 50",
            "4900001:mMin = 45",
            "4900001:mMax = 55",
            "HiddenValley:Ngauge = 3",
            "HiddenValley:nFlav = 1",
            "HiddenValley:FSR = on",
            "HiddenValley:fragment = on",
            "4900111:onMode = on",
            "4900113:onMode = on",
        ]
        + _DARK_WINDOW,
    },
}

# Event selection per output layout (CLI flags override these defaults).
SELECTIONS = {
    # Top-tagging layout: leading anti-kT R=0.8 jet, cut recomputed from the stored constituents.
    "toptag": {
        "jet_r": 0.8,
        "pt_min": 550.0,
        "pt_max": 650.0,
        "eta_max": 2.0,
        "max_constituents": 200,
        "cluster_pt_min": 100.0,
        "truth_match_dr": 0.8,
    },
    # LHCO layout: <= 700 hardest particles, trigger on an anti-kT R=1 jet of the stored particles.
    "lhco": {
        "jet_r": 1.0,
        "trigger_pt": 1200.0,
        "max_particles": 700,
    },
}

# Leading-jet window of the dark-jet benchmarks (Top-Tagging layout, other pT window).
DARK_SELECTION = {"pt_min": 150.0, "pt_max": 300.0, "eta_max": 2.0, "cluster_pt_min": 50.0}

# Which samples make up each CLI command, and the label of each; an optional "selection"
# overrides the layout's SELECTIONS defaults (CLI flags override both).
COMMANDS = {
    "toptag": {"background": "qcd", "signal": "top", "layout": "toptag"},
    "zprime": {"background": None, "signal": "zprime", "layout": "toptag"},
    "lhco": {"background": "lhco_qcd", "signal": "lhco_wprime", "layout": "lhco"},
    "semivisible": {"background": "darkqcd", "signal": "semivisible", "layout": "toptag",
                    "selection": DARK_SELECTION},
    "twoprong": {"background": "darkqcd", "signal": "twoprong", "layout": "toptag",
                 "selection": DARK_SELECTION},
}


def command_selection(command, overrides=None):
    """Selection of a CLI command: layout defaults, then the command's own, then `overrides`."""
    spec = COMMANDS[command]
    return {**SELECTIONS[spec["layout"]], **spec.get("selection", {}), **(overrides or {})}


def sample_settings(name, seed):
    """Full list of Pythia strings for sample `name` with random seed `seed`."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {sorted(SAMPLES)}")
    s = SAMPLES[name]
    lines = list(COMMON)
    lines.append(f"Beams:eCM = {s['beam_energy']}")
    lines.append(f"PartonLevel:MPI = {'on' if s['mpi'] else 'off'}")
    lines += s["settings"]
    lines += ["Random:setSeed = on", f"Random:seed = {int(seed)}"]
    return lines


def settings_digest(names):
    """Stable short hash of the settings of the given samples (cache keys)."""
    blob = json.dumps({n: copy.deepcopy(SAMPLES[n]) for n in sorted(names)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
