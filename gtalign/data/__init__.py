"""Raw data, curation and validation: load the published sets, curate them, and check them with expectations.

Importing this package is cheap: Great Expectations is imported only when `validate` runs.
"""

from gtalign.data.curate import CurateConfig, CurationReport, curate, load_curated, normalize_text, write_curated
from gtalign.data.raw import (
    COLUMNS,
    RAW_FILES,
    DataPullError,
    RawDataMissingError,
    check_raw_data,
    extract_question,
    load_raw,
    messages_of,
    pull_data,
)
from gtalign.data.validate import DataValidationError, ValidationFailure, ValidationReport, validate

__all__ = [
    "COLUMNS",
    "RAW_FILES",
    "CurateConfig",
    "CurationReport",
    "DataPullError",
    "DataValidationError",
    "RawDataMissingError",
    "ValidationFailure",
    "ValidationReport",
    "check_raw_data",
    "curate",
    "extract_question",
    "load_curated",
    "load_raw",
    "messages_of",
    "normalize_text",
    "pull_data",
    "validate",
    "write_curated",
]
