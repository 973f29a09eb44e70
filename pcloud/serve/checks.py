"""Row-by-row checks of serving requests: a bad row is flagged in its own response, never raised.

Triton's dynamic batcher hands the model several requests at once; an exception inside the model function fails
every request of that batch. So nothing here raises: each check returns, per row (cloud), an error code and a
one-line message, and the server runs the model on the good rows only.

Codes (the ``error`` output, INT32 per row):

===== ==================== =====================================================================================
0     ``OK``
1     ``NOT_FINITE``       NaN or inf in the row's real points or per-event inputs
2     ``WRONG_LENGTH``     wrong number of point columns or per-event values, or missing input
3     ``MASK_MISMATCH``    ``mask`` shape differs from the points' (B, N), or the row has no real point
4     ``MODEL_ERROR``      the model failed on this request (the other requests of the batch were rerun alone)
5     ``BAD_VALUE``        a value outside its domain (point ``type`` not 0/1/2, cell id outside the geometry)
===== ==================== =====================================================================================
"""
from __future__ import annotations

import numpy as np

OK, NOT_FINITE, WRONG_LENGTH, MASK_MISMATCH, MODEL_ERROR, BAD_VALUE = 0, 1, 2, 3, 4, 5
CODE_NAMES = {OK: "ok", NOT_FINITE: "not_finite", WRONG_LENGTH: "wrong_length", MASK_MISMATCH: "mask_mismatch",
              MODEL_ERROR: "model_error", BAD_VALUE: "bad_value"}


class RowErrors:
    """Error codes and messages of the ``n`` rows of one request."""

    def __init__(self, n: int):
        self.code = np.zeros(n, np.int32)
        self.message = [""] * n

    def flag(self, rows, code: int, message: str) -> None:
        for r in np.atleast_1d(np.asarray(rows, dtype=np.int64)):
            if self.code[r] == OK:  # the first problem found is the one reported
                self.code[r], self.message[r] = code, message

    def flag_all(self, code: int, message: str) -> None:
        self.flag(np.arange(self.code.size), code, message)

    @property
    def ok(self) -> np.ndarray:
        return self.code == OK

    def messages(self) -> np.ndarray:
        return np.array([m.encode() for m in self.message], dtype=object).reshape(-1, 1)


def n_rows(request: dict, name: str) -> int:
    a = request.get(name)
    return int(a.shape[0]) if a is not None and a.ndim >= 1 else 0


def check_point_request(request: dict, n_columns: int, n_global: int, column_names=(),
                        type_column: int | None = None, cell_column: int | None = None, n_cells: int | None = None
                        ) -> RowErrors:
    """Checks of one point-cloud request: ``points`` (B, N, C) float, ``mask`` (B, N) bool, ``g`` (B, G) when
    ``n_global``; see the module docstring for the codes."""
    pts, mask, g = request.get("points"), request.get("mask"), request.get("g")
    n = n_rows(request, "points")
    err = RowErrors(n)
    if pts is None or pts.ndim != 3:
        err.flag_all(WRONG_LENGTH, f"points must be (B, N, {n_columns}) [{', '.join(column_names)}], found "
                                   f"{None if pts is None else pts.shape}")
        return err
    if pts.shape[2] != n_columns:
        err.flag_all(WRONG_LENGTH, f"points have {pts.shape[2]} columns, this model takes {n_columns} "
                                   f"[{', '.join(column_names)}]")
        return err
    if mask is None or mask.shape != pts.shape[:2]:
        err.flag_all(MASK_MISMATCH, f"mask must be (B, N) = {pts.shape[:2]} like the points, found "
                                    f"{None if mask is None else mask.shape}")
        return err
    mask = mask.astype(bool)
    if n_global:
        if g is None or g.ndim != 2 or g.shape[0] != n or g.shape[1] != n_global:
            err.flag_all(WRONG_LENGTH, f"g must be (B, {n_global}) per-event inputs, found "
                                       f"{None if g is None else g.shape}")
            return err
        bad_g = ~np.isfinite(g).all(1)
        err.flag(np.nonzero(bad_g)[0], NOT_FINITE, "g holds NaN or inf")
    bad = ~np.where(mask[..., None], np.isfinite(pts), True).all((1, 2))
    err.flag(np.nonzero(bad)[0], NOT_FINITE, "points hold NaN or inf")
    err.flag(np.nonzero(~mask.any(1))[0], MASK_MISMATCH, "mask has no real point")
    if type_column is not None:
        t = pts[..., type_column]
        bad_t = (mask & ~np.isin(t, (0.0, 1.0, 2.0))).any(1)
        err.flag(np.nonzero(bad_t)[0], BAD_VALUE, "point type must be 0 (cell), 1 (focal track) or 2 (other track)")
    if cell_column is not None and n_cells is not None:
        c = pts[..., cell_column]
        bad_c = (mask & ((c < 0) | (c >= n_cells) | (c != np.round(c)))).any(1)
        err.flag(np.nonzero(bad_c)[0], BAD_VALUE, f"cell_id must be an integer in [0, {n_cells})")
    return err


def check_event_request(request: dict, spec: dict, may_be_nan=()) -> RowErrors:
    """Checks of one particle-flow request (one event): every input of ``spec`` (name -> shape, -1 for free axes)
    present with that shape and finite (``may_be_nan`` inputs are checked by the caller); a bad event gets one
    flagged row."""
    err = RowErrors(1)
    for name, shape in spec.items():
        a = request.get(name)
        if a is None:
            err.flag_all(WRONG_LENGTH, f"missing input {name!r}")
            return err
        if a.ndim != len(shape) or any(s not in (-1, d) for s, d in zip(shape, a.shape)):
            err.flag_all(WRONG_LENGTH, f"{name} must have shape {tuple(shape)} (-1: any), found {a.shape}")
            return err
        if name not in may_be_nan and a.dtype.kind == "f" and not np.isfinite(a).all():
            err.flag_all(NOT_FINITE, f"{name} holds NaN or inf")
            return err
    return err
