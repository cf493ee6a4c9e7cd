"""The one error type raised on bad data files or arrays."""


class DataFormatError(ValueError):
    """Bad input data: names the file (or array owner) and the offending field."""

    def __init__(self, path, field, message):
        self.path = str(path)
        self.field = str(field)
        self.message = str(message)
        super().__init__(f"{self.path}: field '{self.field}': {self.message}")
