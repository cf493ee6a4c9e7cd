"""The one error type raised on bad data files or arrays (defined in ``shared.errors``)."""
from shared.errors import DataFormatError

__all__ = ["DataFormatError"]
