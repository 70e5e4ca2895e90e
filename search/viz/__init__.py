"""Pictures: one recording (``plot``), a corpus (``explore``) and an HTML report (``report``).

Headless (matplotlib's Agg backend, its bundled DejaVu fonts); every file is written atomically.
Nothing here imports the command line.
"""

from __future__ import annotations

from emotune.search.viz._common import VizError, write_atomic
from emotune.search.viz.corpus import CorpusView, cluster_purity, explore
from emotune.search.viz.recording import Recording, analyse, formant_peaks, plot_recording, spectral_envelope
from emotune.search.viz.report import ensemble_page, evaluation_doc_page, write_report

__all__ = [
    "CorpusView",
    "Recording",
    "VizError",
    "analyse",
    "cluster_purity",
    "ensemble_page",
    "evaluation_doc_page",
    "explore",
    "formant_peaks",
    "plot_recording",
    "spectral_envelope",
    "write_atomic",
    "write_report",
]
