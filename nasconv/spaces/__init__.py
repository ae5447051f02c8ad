"""Search spaces: YAML data files validated on load, with exact cost bounds and sampling.

A space file names the backbone (stem, block type, stages) and, per stage, the operator
choices with their hyperparameter grids; see ``search_spaces/resnet50.yaml``. :mod:`.model`
holds the space and its checks, :mod:`.files` the reading of space and architecture files.

May import: nasconv.arch, nasconv.cost, nasconv.ops, nasconv.errors.
"""

from nasconv.spaces.files import MAX_YAML_NODES, SPACE_SUFFIXES, list_spaces, load_arch, load_space
from nasconv.spaces.model import (
    MAX_CLASSES,
    MAX_DEPTH,
    MAX_EXPANSION,
    MAX_IN_CHANNELS,
    MAX_OP_GRID,
    MAX_RESOLUTION,
    MAX_STAGE_WORK,
    MAX_STAGES,
    MAX_WIDTH,
    SearchSpace,
    StageSpace,
    parse_space,
)

__all__ = ["MAX_CLASSES", "MAX_DEPTH", "MAX_EXPANSION", "MAX_IN_CHANNELS", "MAX_OP_GRID", "MAX_RESOLUTION",
           "MAX_STAGES", "MAX_STAGE_WORK", "MAX_WIDTH", "MAX_YAML_NODES", "SPACE_SUFFIXES", "SearchSpace",
           "StageSpace", "list_spaces", "load_arch", "load_space", "parse_space"]
