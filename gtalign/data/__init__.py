"""Raw data, curation and validation: load the published sets, curate them, and check them with expectations;
render a curated row's prompt (`prompts`). The stages over them (curate, demonstrations, teacher eval) are in
`gtalign.data.stages`, which this package does not import.

Importing this package is cheap: Great Expectations is imported only when `validate` runs.
"""

from gtalign.data.curate import CurateConfig, CurationReport, curate, load_curated, normalize_text, write_curated
from gtalign.data.prompts import extra_info_of, prompt_messages
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
    "extra_info_of",
    "extract_question",
    "load_curated",
    "load_raw",
    "messages_of",
    "normalize_text",
    "prompt_messages",
    "pull_data",
    "validate",
    "write_curated",
]
