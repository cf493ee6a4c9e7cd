"""Official data formats (top tagging, LHCO R&D), our processed layout, and Pythia 8 + FastJet
stand-in generation. Readers/writers raise `DataFormatError` naming the file and the field."""
from .errors import DataFormatError
from .lhco import count_lhco, iter_lhco, read_lhco, write_lhco
from .processed import read_processed, write_processed
from .toptag import count_toptag, iter_toptag, read_toptag, write_toptag
from ._hdfio import read_metadata, repair_pandas_version

__all__ = [
    "DataFormatError",
    "count_lhco",
    "iter_lhco",
    "read_lhco",
    "write_lhco",
    "read_processed",
    "write_processed",
    "count_toptag",
    "iter_toptag",
    "read_toptag",
    "write_toptag",
    "read_metadata",
    "repair_pandas_version",
]
