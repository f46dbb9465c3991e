"""``python -m elm_audio.extract_only [overrides]``: extract features into the cache, classify nothing.

Comma-separated values are swept as Hydra's grid does (``frontend=vgg,mfcc
feature_size=small,large``: four entries). The entries are shared in chunks with every other
process that needs them (chunks.py), so the tasks of a SLURM array can all run the same command:
first each task computes the chunks no one has claimed, entry after entry; then, for each entry,
it waits for the chunks others compute and assembles the entry or loads it. A task killed or
stopped at its time limit loses only the chunk it was computing: the same command resumes.
Prints one line per entry; exits 0 once every entry is in the cache, 1 when one cannot be made
(one line says why), 2 on a command line it cannot read.
"""

from __future__ import annotations

import itertools
import signal
import sys

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig

from .config import ConfigError, compose
from .datasets import DatasetError
from .devices import keep_freed_memory
from .run.features import load_or_extract, share_extraction
from .run.plan import make_plan
from .settings.settings import load
from .settings.unknown_keys import check
from .sound.decode import AudioError
from .stores.cache import CacheError, FeatureCache

USAGE = """usage: python -m elm_audio.extract_only [key=value ...]   (key=a,b,...: each value in turn)
  e.g. python -m elm_audio.extract_only frontend=vgg,mfcc feature_size=small,large \\
           dataset=us8k dataset.root=/data/UrbanSound8K cache.dir=/shared/elm_audio_cache
  Several processes (a SLURM array's tasks) may run the same command: they share the work."""


def combinations(overrides: list[str]) -> list[list[str]]:
    """Every combination of the overrides' values, the last override varying fastest."""
    values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
              for o in OverridesParser.create().parse_overrides(overrides)]  # fmt: skip
    return [list(chosen) for chosen in itertools.product(*values)]


def compute_unclaimed(cfg: DictConfig) -> int:
    """The chunks of ``cfg``'s entry that no process has claimed, computed here; how many."""
    settings = load(cfg)
    return share_extraction(settings.extraction, settings.device, make_plan(settings), FeatureCache(settings.cache_dir), wait=False)


def complete(cfg: DictConfig, computed: int) -> str:
    """``cfg``'s entry in the cache, the chunks others compute waited for; the line that says so."""
    settings = load(cfg)  # read again, and a plan again: its front-end was let go
    plan, cache = make_plan(settings), FeatureCache(settings.cache_dir)
    computed += share_extraction(settings.extraction, settings.device, plan, cache)
    with cache.lock(plan.key) as locked:
        features, assembled = load_or_extract(settings.extraction, settings.device, plan, cache, locked)
    here = [f"{computed} chunk(s) computed here"] if computed else []
    if assembled:
        here.append("assembled here")
    n, dim = features.matrix.shape
    how = ", ".join(here) or "from the cache"
    return f"{settings.names.frontend} {settings.names.feature_size}: {n} clips x {dim} features, {features.path} ({how})"


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(USAGE)
        return 0
    previous = signal.signal(signal.SIGTERM, _terminate)  # a job's time limit: its claims released, its chunks kept
    try:
        check(args)
        keep_freed_memory()  # large maps reuse memory: faster, at the peak's size (devices.py)
        jobs = [compose(job) for job in combinations(args)]
        computed = [compute_unclaimed(cfg) for cfg in jobs]
        for cfg, n in zip(jobs, computed):
            print(complete(cfg, n), flush=True)
    except (ConfigError, HydraException) as err:
        print(f"elm_audio: {err}", file=sys.stderr)
        return 2
    except (DatasetError, AudioError, CacheError) as err:
        print(f"elm_audio: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("elm_audio: interrupted; the chunks already complete are kept: the same command resumes from them",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
