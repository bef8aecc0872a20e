"""What a prediction says of some photos, from the network's softmax to the files and the decisions: each photo's 18
class probabilities and, where every model's age head learns the exact age, its age in years. Files hold it as one
table, p0..p17 then `years`: `table` writes that table and `from_table` reads it, the one pair that knows the
column."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from src.labels import PROB_COLUMNS

YEARS = "years"  # the column of the age in years


class Predictions(NamedTuple):
    """(rows, 18) class probabilities, and (rows,) ages in years or None."""
    probs: np.ndarray
    years: np.ndarray | None = None

    def table(self) -> pd.DataFrame:
        """p0..p17, then the years where there are."""
        df = pd.DataFrame(self.probs, columns=PROB_COLUMNS)
        return df if self.years is None else df.assign(**{YEARS: np.asarray(self.years)})

    @classmethod
    def from_table(cls, df: pd.DataFrame) -> Predictions:
        """The predictions of a table's rows; the years only where every row has one."""
        has = YEARS in df and not df[YEARS].isna().any()
        return cls(df[PROB_COLUMNS].to_numpy(), df[YEARS].to_numpy(dtype=np.float64) if has else None)

    def finite(self) -> np.ndarray:
        """Whether each row is finite: its probabilities, and its age where there is one."""
        ok = np.isfinite(self.probs).all(1)
        return ok if self.years is None else ok & np.isfinite(self.years)

    def placed(self, n: int, rows: np.ndarray) -> Predictions:
        """These predictions as the rows `rows` of n rows, the others zero."""
        out = Predictions(np.zeros((n, self.probs.shape[1])), None if self.years is None else np.zeros(n))
        out.probs[rows] = self.probs
        if self.years is not None:
            out.years[rows] = self.years
        return out

    def take(self, rows) -> Predictions:
        return Predictions(self.probs[rows], None if self.years is None else self.years[rows])

    @staticmethod
    def concat(parts: list[Predictions]) -> Predictions:
        years = [p.years for p in parts]
        return Predictions(np.concatenate([p.probs for p in parts]),
                           None if any(y is None for y in years) else np.concatenate(years))

    @staticmethod
    def mean(parts: list[Predictions]) -> Predictions:
        """The mean of several models' or runs' predictions of the same rows; the years where each part has them."""
        years = [p.years for p in parts]
        return Predictions(np.mean([p.probs for p in parts], axis=0),
                           None if any(y is None for y in years) else np.mean(years, axis=0))
