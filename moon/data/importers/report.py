"""The import report: every input row accounted for (imported, or bad with its id and reason).

Importers never drop a row silently; a bad row is counted under its reason and listed with
its id and line, and the report is written next to the imported dataset as JSON.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional, Union

from pydantic import BaseModel, Field

from moon.data.shards import atomic_write_json

REPORT_NAME = "import_report.json"


class BadRow(BaseModel):
    id: Optional[str] = Field(None, description="the row's id when it has one")
    line: Optional[int] = Field(None, description="1-based line (CSV/JSON lines) or row index (parquet)")
    reason: str


class ImportReport(BaseModel):
    source: str
    out: str
    rows: int = 0
    products: dict[str, int] = Field(default_factory=dict, description="imported products per split")
    queries: dict[str, int] = Field(default_factory=dict, description="imported queries per split")
    bad_rows: list[BadRow] = Field(default_factory=list)
    bad_reasons: dict[str, int] = Field(default_factory=dict, description="bad rows per reason kind")
    notes: list[str] = Field(default_factory=list, description="file-level findings, e.g. ignored columns")

    def bad(self, reason: str, row_id: Optional[str] = None, line: Optional[int] = None) -> None:
        self.bad_rows.append(BadRow(id=row_id, line=line, reason=reason))
        kind = reason.split(":")[0]
        self.bad_reasons[kind] = self.bad_reasons.get(kind, 0) + 1

    def imported(self, table: str, split: str) -> None:
        counts = self.products if table == "products" else self.queries
        counts[split] = counts.get(split, 0) + 1

    def top_reasons(self, n: int = 10) -> list[tuple[str, int]]:
        return Counter(self.bad_reasons).most_common(n)

    def write(self, path: Union[str, Path]) -> None:
        atomic_write_json(path, self.model_dump(mode="json"))
