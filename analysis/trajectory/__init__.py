"""Fine-tuning trajectories on a safety landscape: where the snapshots of a fine-tuning run
(`landscape.asft train|compare --save-every K`) lie in a grid's coordinates, how much of each
update the grid's plane holds, and how well the grid's ASR there predicts the ASR measured at
the snapshot.

- `plane`: the grid run read and its directions rebuilt by the grid's own code (`Grid`), and
  `project`, an update's least-squares coordinates and off-plane share;
- `interp`: `Surface`, bilinear (1-D: linear) interpolation of the grid's ASR, never
  extrapolated;
- `runs`: `find_runs`, the fine-tuning runs with snapshots, and `check_start`;
- `measure`: `Measurer`, the grid's point code at each snapshot;
- `table`: rows, tables per method, correlation and mean absolute error;
- `figure`: the landscape with the paths (PNG, PDF, offline HTML);
- `build`: `trajectories`, all of it from the folders; `__main__`: the command line.
"""

from analysis.trajectory.build import trajectories
from analysis.trajectory.interp import Surface
from analysis.trajectory.plane import Grid, Projection, project

__all__ = ["Grid", "Projection", "Surface", "project", "trajectories"]
