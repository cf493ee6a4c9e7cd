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

# Which samples make up each CLI command, and the label of each.
COMMANDS = {
    "toptag": {"background": "qcd", "signal": "top", "layout": "toptag"},
    "zprime": {"background": None, "signal": "zprime", "layout": "toptag"},
    "lhco": {"background": "lhco_qcd", "signal": "lhco_wprime", "layout": "lhco"},
}


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
