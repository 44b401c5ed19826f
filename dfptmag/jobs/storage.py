"""Contract-and-discard for the jobs that run QE (``[storage]``, ``--discard-dwf``,
``--keep-dwf``, ``--keep-scratch``): each pattern's δψ is contracted as soon as it is captured
(:mod:`dfptmag.analysis.contract`), verified against fildrho, written and recorded, and only
then deleted; once every pattern of a q is contracted and fildyn is written, the q's ph.x
scratch goes too (``keep_scratch`` keeps it)."""
from __future__ import annotations


def settings(wf, engine: str | None = None, discard_dwf: bool | None = None,
             keep_scratch: bool | None = None) -> dict:
    """{"discard_dwf": bool, "keep_scratch": bool} from the flags, else the workflow."""
    from ..workflow.config import discard_dwf as resolve
    return {"discard_dwf": resolve(wf, engine, discard_dwf),
            "keep_scratch": bool(wf.storage["keep_scratch"] if keep_scratch is None else keep_scratch)}


def attach(runner, storage: dict) -> None:
    """Give a :class:`dfptmag.workflow.runner.Runner` the contraction callable when asked for."""
    if storage["discard_dwf"]:
        from ..analysis.contract import contractor
        runner.contract = contractor()
        runner.keep_scratch = storage["keep_scratch"]
